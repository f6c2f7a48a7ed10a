"""How the device runner fails and talks: one ``SPIRAL-DEVICE-ERROR <kind>: <message>`` line on stderr and
exit status 3 (``spiralprune deploy`` turns the line into its own one-line error), progress lines on stdout."""

from __future__ import annotations

ERROR_MARK = "SPIRAL-DEVICE-ERROR"
EXIT_ERROR = 3
NO_SPACE = "No space left on device"


class DeviceError(Exception):
    """A failure with a kind ``spiralprune deploy`` recognizes: checksum, missing-tool, power-mode,
    unsupported, build-failed, profile-failed, disk-full."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def say(message: str) -> None:
    print(f"device: {message}", flush=True)
