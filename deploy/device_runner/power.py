"""The power state the target expects (nvpmodel mode, ``jetson_clocks``): another one would not count."""

from __future__ import annotations

from .errors import DeviceError


def check_power(expected: dict | None, facts: dict) -> None:
    """Refuse to measure in another power state than the target's: the numbers would not count."""
    if not expected:
        return
    mode = facts["power_mode"]
    want_id, want_name = expected.get("nvpmodel_id"), expected.get("nvpmodel_name")
    if want_id is not None or want_name is not None:
        if mode is None:
            raise DeviceError("missing-tool", "the target expects an nvpmodel power mode but the device has no nvpmodel")
        if mode.get("error"):
            raise DeviceError("power-mode", f"cannot read the power mode with nvpmodel -q: {mode['error']}")
        if (want_id is not None and mode["id"] != want_id) or (want_name is not None and mode["name"] != want_name):
            wanted = " ".join(w for w in (want_name, f"(id {want_id})" if want_id is not None else None) if w)
            fix = f"sudo nvpmodel -m {want_id}" if want_id is not None else "sudo nvpmodel -m <id of that mode>"
            raise DeviceError("power-mode", f"the device is in power mode {mode['name']} (id {mode['id']}); the target "
                                            f"expects {wanted}: run `{fix}` on the device")
    want_clocks = expected.get("jetson_clocks")
    have_clocks = facts["clocks"]["jetson_clocks"]
    if want_clocks is not None and have_clocks is not None and have_clocks != want_clocks:
        fix = "sudo jetson_clocks" if want_clocks else "sudo jetson_clocks --restore"
        state = "on" if have_clocks else "off"
        raise DeviceError("power-mode", f"jetson_clocks is {state} on the device, the target expects it "
                                        f"{'on' if want_clocks else 'off'}: run `{fix}` on the device")
