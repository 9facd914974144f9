"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """AppTest runs page scripts in this process, and the toy page sets torch to one thread for the server:
    give every test the thread count it started with."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
