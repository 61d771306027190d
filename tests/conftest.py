"""Fixtures shared by every test folder."""

import pytest
import torch


class MatmulRecorder:
    """Bytes of the output of every torch ``@`` product from creation until :meth:`stop`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self._real = torch.Tensor.__matmul__

        def spy(x, y):
            out = self._real(x, y)
            self.sizes.append(out.numel() * out.element_size())
            return out

        monkeypatch.setattr(torch.Tensor, "__matmul__", spy)

    def stop(self) -> None:
        torch.Tensor.__matmul__ = self._real


@pytest.fixture
def matmul_bytes(monkeypatch):
    """Record the size of every matrix product a test makes (memory-budget tests)."""
    recorder = MatmulRecorder(monkeypatch)
    yield recorder
    recorder.stop()
