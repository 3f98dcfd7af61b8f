"""Silence one line bitsandbytes prints at import that a user can do nothing about.

On a CPU with AVX512-BF16, bitsandbytes tries to fetch a faster 4-bit kernel from the Hugging Face hub through the
optional `kernels` package and logs a warning when it cannot ("Failed to load CPU gemm_4bit_forward from
kernels-community"). This project never downloads at run time, so that kernel is never there: bitsandbytes then
uses its own bundled CPU kernel, which is what the README describes. Only that message is filtered; every other
bitsandbytes warning still shows."""
from __future__ import annotations

import logging

_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
_LOGGER = "bitsandbytes.backends.cpu.ops"


class _DropHubKernelWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_MESSAGE)


def silence_hub_kernel_warning() -> None:
    """Install the filter (idempotent); must run before bitsandbytes is first imported."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, _DropHubKernelWarning) for f in logger.filters):
        logger.addFilter(_DropHubKernelWarning())
