"""The PyTorch backend (work in progress: registers nothing yet)."""
