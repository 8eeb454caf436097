"""XID error codes: a short text for each, and which ones need an operator.

The NVIDIA driver reports serious GPU events as numbered XID errors. dcgm-exporter puts
a description of the code in the ``err_msg`` label of ``DCGM_FI_DEV_XID_ERRORS``; we do
the same with :func:`describe`. The texts summarise NVIDIA's public XID catalogue (codes
0-172) in our own words. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

UNKNOWN: Final = "Unknown XID"

_UNUSED = "Unused code"
_RESERVED = "Reserved code"
_PUSHBUFFER = "Corrupt or invalid command (push buffer) stream"
_VIDEO = "Video processor exception"


def _engine_error(engine: str) -> str:
    return f"{engine} engine error"


_TEXTS: dict[int, str] = {
    0: "No error",
    1: _PUSHBUFFER,
    2: _PUSHBUFFER,
    3: _PUSHBUFFER,
    4: _PUSHBUFFER,
    5: _UNUSED,
    6: _PUSHBUFFER,
    7: "Corrupt or invalid command (push buffer) address",
    8: "GPU stopped processing (engine timeout)",
    9: "Driver failed to program the GPU",
    10: _UNUSED,
    11: _PUSHBUFFER,
    12: "Driver failed to handle a GPU exception",
    13: "Graphics engine exception (often an application fault such as an illegal address)",
    14: _UNUSED,
    15: _UNUSED,
    16: "Display engine hung",
    17: _UNUSED,
    18: "PCI bus mastering is disabled for the GPU",
    19: "Display engine error",
    20: "Corrupt or invalid MPEG command stream",
    21: "Corrupt or invalid motion-estimation command stream",
    22: "Corrupt or invalid video-processor command stream",
    23: _UNUSED,
    24: "GPU semaphore timed out",
    25: "Invalid or illegal command (push buffer) stream",
    26: "Framebuffer access timed out",
    27: _VIDEO,
    28: _VIDEO,
    29: _VIDEO,
    30: "GPU semaphore access error",
    31: "GPU memory page fault (MMU fault, usually an illegal access by an application)",
    32: _PUSHBUFFER,
    33: "Internal microcontroller error",
    34: _VIDEO,
    35: _VIDEO,
    36: _VIDEO,
    37: "Driver firmware error",
    38: "Driver firmware error",
    39: _UNUSED,
    40: _UNUSED,
    41: _UNUSED,
    42: _VIDEO,
    43: "GPU stopped processing (an application fault ended its channel)",
    44: "Graphics engine fault during a context switch",
    45: "Channel cleaned up because of an earlier error (preemptive cleanup)",
    46: "GPU stopped processing",
    47: _VIDEO,
    48: "Double-bit ECC error (uncorrectable memory error)",
    49: _UNUSED,
    50: _UNUSED,
    51: _UNUSED,
    52: _UNUSED,
    53: _UNUSED,
    54: "Auxiliary power cable is not connected to the GPU",
    55: _UNUSED,
    56: "Display engine error",
    57: "Error while programming the video memory interface",
    58: "Video memory interface is unstable",
    59: "Internal microcontroller error",
    60: _VIDEO,
    61: "Internal microcontroller breakpoint or warning",
    62: "Internal microcontroller halted",
    63: "Memory page retirement or row remapping was recorded",
    64: "Memory page retirement or row remapping could not be recorded",
    65: _VIDEO,
    66: "Illegal access by the driver",
    67: "Illegal access by the driver",
    68: "Video decoder (NVDEC0) exception",
    69: "Graphics engine class error",
    70: _engine_error("Copy (CE3)"),
    71: _engine_error("Copy (CE4)"),
    72: _engine_error("Copy (CE5)"),
    73: _engine_error("Video encoder (NVENC2)"),
    74: "NVLink error",
    75: _engine_error("Copy (CE6)"),
    76: _engine_error("Copy (CE7)"),
    77: _engine_error("Copy (CE8)"),
    78: "vGPU failed to start",
    79: "GPU has fallen off the bus",
    80: "Corrupt data was sent to the GPU",
    81: "VGA subsystem error",
    82: _engine_error("JPEG (NVJPG0)"),
    83: _engine_error("Video decoder (NVDEC1)"),
    84: _engine_error("Video decoder (NVDEC2)"),
    85: _engine_error("Copy (CE9)"),
    86: "Optical flow accelerator (OFA) exception",
    87: _RESERVED,
    88: _engine_error("Video decoder (NVDEC3)"),
    89: _engine_error("Video decoder (NVDEC4)"),
    90: _RESERVED,
    91: _RESERVED,
    92: "Single-bit ECC errors at a high rate",
    93: "InfoROM wear limit exceeded (not fatal)",
    94: "Contained ECC error (only the affected application is hit)",
    95: "Uncontained ECC error (every application on the GPU is hit)",
    96: _engine_error("Video decoder (NVDEC5)"),
    97: _engine_error("Video decoder (NVDEC6)"),
    98: _engine_error("Video decoder (NVDEC7)"),
    99: _engine_error("JPEG (NVJPG1)"),
    100: _engine_error("JPEG (NVJPG2)"),
    101: _engine_error("JPEG (NVJPG3)"),
    102: _engine_error("JPEG (NVJPG4)"),
    103: _engine_error("JPEG (NVJPG5)"),
    104: _engine_error("JPEG (NVJPG6)"),
    105: _engine_error("JPEG (NVJPG7)"),
    106: "SMBPBI test message",
    107: "SMBPBI test message (silent)",
    108: _RESERVED,
    109: "Context switch timed out",
    110: "Security fault",
    111: "Display bundle error",
    112: "Display supervisor error",
    113: "DisplayPort link training failed",
    114: "Display pipeline underflow",
    115: "Display core channel error",
    116: "Display window channel error",
    117: "Display cursor channel error",
    118: "Display pixel pipeline error",
    119: "GSP firmware call (RPC) timed out",
    120: "GSP firmware error",
    121: "C2C (chip-to-chip) link error",
    122: "SPI read through the PMU failed",
    123: "SPI write through the PMU failed",
    124: "SPI erase through the PMU failed",
    125: "InfoROM file system failure",
    126: _engine_error("Copy (CE10)"),
    127: _engine_error("Copy (CE11)"),
    128: _engine_error("Copy (CE12)"),
    129: _engine_error("Copy (CE13)"),
    130: _engine_error("Copy (CE14)"),
    131: _engine_error("Copy (CE15)"),
    132: _engine_error("Copy (CE16)"),
    133: _engine_error("Copy (CE17)"),
    134: _engine_error("Copy (CE18)"),
    135: _engine_error("Copy (CE19)"),
    136: "NVLink training (ALI) failed",
    137: "NVLink privilege error",
    138: _engine_error("Deep learning accelerator (DLA)"),
    139: _engine_error("Optical flow accelerator (OFA1)"),
    140: "ECC error that could not be recovered",
    141: "Fast path channel error",
    142: _engine_error("Video encoder (NVENC3)"),
    143: "GPU initialization failed",
    144: "NVLink SAW error",
    145: "NVLink RLW error",
    146: "NVLink TLW error",
    147: "NVLink TREX error",
    148: "NVLink NVLPW_CTRL error",
    149: "NVLink NETIR error",
    150: "NVLink MSE error",
    151: "Encryption key rotation error",
    152: "Deep learning accelerator (DLA) SMMU error",
    153: "Deep learning accelerator (DLA) timed out",
    154: "GPU recovery action changed",
    155: "NVLink software-defined error",
    156: "Resource retirement event",
    157: "Resource retirement failed",
    158: "GPU fatal timeout",
    159: "CHI non-data error",
    160: "Channel retirement event",
    161: "Channel retirement failed",
    162: "Power smoothing circuitry engaged again",
    163: "Power smoothing circuitry disengaged",
    164: "Power smoothing circuitry nearing end of life",
    165: "Power smoothing circuitry at end of life",
    166: "NVLink encryption error",
    167: "PCIe fatal timeout",
    168: "GPU memory capacity reduced (errors in a write-protected region)",
    169: "Internal microcontroller halted",
    170: "NVLink interrupt while in confidential computing mode",
    171: "Uncorrectable DRAM error",
    172: "Uncorrectable SRAM error",
}

TEXTS: Final[Mapping[int, str]] = MappingProxyType(_TEXTS)
"""XID code -> short description, codes 0-172."""

# Codes after which someone has to act on the node (reset or drain the GPU, reboot,
# check cabling, or send the board back), as opposed to codes that point at an
# application bug or a passing condition the driver recovers from on its own.
ACTION_XIDS: Final[frozenset[int]] = frozenset({
    48,   # double-bit ECC error: reset the GPU so the page is retired or the row remapped
    54,   # auxiliary power not connected: hardware must be fixed before the GPU is usable
    62,   # internal microcontroller halted: the GPU needs a reset
    63,   # page retirement / row remap recorded: a pending remap takes effect only on reset
    64,   # retirement / remap could not be recorded: the board is a candidate for RMA
    74,   # NVLink error: check the link; the GPU usually needs a reset
    79,   # GPU fell off the bus: it is unreachable until the node is power-cycled
    92,   # high single-bit ECC rate: memory degrading; schedule a reset and watch it
    94,   # contained ECC error: the application died; reset the GPU when it is drained
    95,   # uncontained ECC error: every process on the GPU is hit; reset required
    119,  # GSP firmware call timed out: the GPU is stuck until it is reset
    120,  # GSP firmware error: the GPU needs a reset
    125,  # InfoROM file system failure: firmware storage damaged; RMA candidate
    136,  # NVLink training failed: the link is down until the fabric is reset
    140,  # ECC error not recovered: reset the GPU
    143,  # GPU initialization failed: the GPU is unusable until reset or repaired
    144, 145, 146, 147, 148, 149, 150,  # NVLink fatal errors: reset GPU/fabric, check links
    154,  # recovery action changed: the driver asks for a reset, drain or reboot
    155,  # NVLink software-defined error: treated like the NVLink errors above
    156,  # resource retirement: like 63 on newer GPUs, takes effect after a reset
    157,  # resource retirement failed: like 64, RMA candidate
    158,  # GPU fatal timeout: reset required
    160,  # channel retirement: a reset is needed to clear it
    161,  # channel retirement failed: reset, and replace if it recurs
    164,  # power smoothing circuitry nearing end of life: plan a replacement
    165,  # power smoothing circuitry exhausted: replace the board
    166,  # NVLink encryption error: confidential-computing link broken; reset
    167,  # PCIe fatal timeout: the GPU is unreachable; reset or reboot
    168,  # memory capacity reduced: the board is degraded; RMA candidate
    169,  # internal microcontroller halted: reset required
    171,  # uncorrectable DRAM error: reset, and replace if it recurs
    172,  # uncorrectable SRAM error: reset, and replace if it recurs
})


def describe(code: int) -> str:
    """Short description of an XID code; ``"Unknown XID"`` for codes not in the catalogue."""
    return _TEXTS.get(code, UNKNOWN)
