"""The firmware model's controller: state machine, settings, error queue, sequencer, frames.

Frames are checked against an independent path: opu.Simulator built directly from the same config.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import opu
from firmware_models import Controller, FirmwareError, State
from firmware_models.controller import ERROR_QUEUE_SIZE
from firmware_models.framing import encode_block, parse_block

N = 64
ROI = {"row": 500, "col": 900, "height_px": 16, "width_px": 16}
M = 256


def small(c: Controller) -> Controller:
    c.set_settings({"n_features": N, "camera_roi": ROI})
    return c


def patterns(b: int, seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=(b, n)).astype(bool)


def acquire(c: Controller, x: np.ndarray) -> np.ndarray:
    c.upload_patterns(opu.pack_patterns(x))
    c.start_acquisition()
    return c.fetch_frames()


def bench(seed: int = 0, **camera) -> opu.OPUConfig:
    return opu.realistic(seed=seed).replace(camera={"roi": ROI, **camera})


def drain(c: Controller) -> list[tuple[int, str]]:
    out = []
    while (e := c.next_error())[0] != 0:
        out.append(e)
    return out


# ---------------------------------------------------------------------------- identity, defaults
def test_identity_and_power_on_settings_match_the_documented_defaults():
    c = Controller()
    assert c.identity == ("OpenOPU", "OPU-1140-SIM", "SIM0001", c.identity[3])
    assert c.handle(b"*IDN?\n") == (",".join(c.identity) + "\n").encode()
    # docs/protocol.md section 4.3 and drivers.DeviceSettings() defaults
    assert c.get_settings() == {
        "n_features": 1024, "exposure_us": 400.0, "frame_time_us": 500.0, "bit_depth": 8,
        "analog_gain_db": 0.0,
        "camera_roi": {"row": 508, "col": 928, "height_px": 64, "width_px": 64},
        "input_roi": {"row": 0, "col": 0, "height_mirrors": 912, "width_mirrors": 1140},
        "macro_pixel_mirrors": 1,
    }
    assert c.state is State.IDLE
    assert c.handle(b"CAM:SIZE?;DMD:SIZE?;SEQ:MAX?\n") == b"1080,1920;912,1140;4096\n"


def test_settings_round_trip_through_scpi_with_long_and_short_forms():
    c = Controller()
    c.handle(b"camera:exposure 250.5;CAM:FTIM 1e3;CAM:GAIN 6.25;Cam:Bits 12;CAMERA:ROI 10,20,8,4\n")
    c.handle(b":DMD:ROI 100,200,300,400;DMD:MACR 2;dmd:features 300\n")
    assert drain(c) == []
    s = c.get_settings()
    assert s == {
        "n_features": 300, "exposure_us": 250.5, "frame_time_us": 1000.0, "bit_depth": 12,
        "analog_gain_db": 6.25, "camera_roi": {"row": 10, "col": 20, "height_px": 8, "width_px": 4},
        "input_roi": {"row": 100, "col": 200, "height_mirrors": 300, "width_mirrors": 400},
        "macro_pixel_mirrors": 2,
    }
    assert c.handle(b"CAM:EXP?;CAM:FTIM?;CAM:GAIN?;CAM:BITS?;CAM:ROI?;DMD:ROI?;DMD:MACR?;DMD:FEAT?\n") == (
        b"250.5;1000.0;6.25;12;10,20,8,4;100,200,300,400;2;300\n")
    # floats come back exactly (repr precision)
    c.handle(f"CAM:EXP {100.1 + 0.2!r}\n".encode())
    assert float(c.handle(b"CAM:EXP?\n")) == 100.1 + 0.2
    c.handle(f"CAM:EXP {123.456789012345678!r}\n".encode())
    assert float(c.handle(b"CAM:EXP?\n")) == 123.456789012345678


@pytest.mark.parametrize(("name", "value"), [
    ("exposure_us", 0.5), ("exposure_us", 2e6), ("frame_time_us", 2e7), ("analog_gain_db", -1.0),
    ("analog_gain_db", 30.0), ("bit_depth", 9), ("bit_depth", 16), ("n_features", 0),
    ("n_features", 912 * 1140 + 1), ("macro_pixel_mirrors", 0),
    ("camera_roi", {"row": 1070, "col": 0, "height_px": 16, "width_px": 16}),
    ("camera_roi", {"row": 0, "col": 0, "height_px": 0, "width_px": 16}),
    ("input_roi", {"row": 0, "col": 1000, "height_mirrors": 10, "width_mirrors": 141}),
    ("exposure_us", float("nan")),
])
def test_out_of_range_values_are_refused_with_222_and_change_nothing(name, value):
    c = Controller()
    before = c.get_settings()
    with pytest.raises(FirmwareError) as ei:
        c.set_setting(name, value)
    assert ei.value.code == -222
    assert name in ei.value.message
    assert c.get_settings() == before
    assert c.next_error() == (0, "No error")  # Python API raises, it does not queue


def test_wrong_types_are_refused_with_104_not_coerced():
    c = Controller()
    for name, value in [("n_features", 64.0), ("n_features", True), ("exposure_us", "400"),
                        ("camera_roi", (1, 2, 3)), ("camera_roi", {"row": 0})]:
        with pytest.raises(FirmwareError) as ei:
            c.set_setting(name, value)
        assert ei.value.code == -104, (name, value)
    with pytest.raises(FirmwareError) as ei:
        c.set_setting("colour", 3)
    assert ei.value.code == -113


def test_inconsistent_settings_give_221_but_one_line_changes_them_atomically():
    c = Controller()
    with pytest.raises(FirmwareError) as ei:
        c.set_setting("exposure_us", 600.0)  # > frame time 500
    assert ei.value.code == -221
    with pytest.raises(FirmwareError) as ei:
        c.set_setting("input_roi", {"row": 0, "col": 0, "height_mirrors": 10, "width_mirrors": 10})
    assert ei.value.code == -221 and "1024" in ei.value.message
    # on one line (or through set_settings) the combination is checked as a whole
    assert c.handle(b"CAM:EXP 4000;CAM:FTIM 5000\n") is None
    assert drain(c) == []
    assert (c.get_settings()["exposure_us"], c.get_settings()["frame_time_us"]) == (4000.0, 5000.0)
    c.set_settings({"n_features": 100, "input_roi": [0, 0, 10, 10]})
    # an inconsistent line is rolled back entirely
    assert c.handle(b"CAM:GAIN 3;CAM:EXP 9000\n") is None
    assert [e[0] for e in drain(c)] == [-221]
    assert c.get_settings()["analog_gain_db"] == 0.0


def test_state_machine_transitions():
    c = Controller()
    assert c.state is State.IDLE
    small(c)
    assert c.state is State.CONFIGURED
    with pytest.raises(FirmwareError) as ei:
        c.start_acquisition()
    assert ei.value.code == 202 and c.state is State.ERROR
    c.clear_status()
    assert c.state is State.CONFIGURED
    c.upload_patterns(opu.pack_patterns(patterns(3)))
    assert c.state is State.ARMED and c.sequence_length == 3
    c.start_acquisition()
    assert c.state is State.READY and c.frames_ready == 3
    c.set_setting("exposure_us", 300.0)  # frames are dropped, the sequence stays
    assert c.state is State.ARMED and c.frames_ready == 0
    with pytest.raises(FirmwareError) as ei:
        c.fetch_frames()
    assert ei.value.code == 204
    c.set_setting("n_features", 32)  # pattern width changed: the sequence goes too
    assert c.state is State.CONFIGURED and c.sequence_length == 0
    c.upload_patterns(opu.pack_patterns(patterns(2, n=32)))
    c.set_laser(False)
    with pytest.raises(FirmwareError) as ei:
        c.start_acquisition()
    assert ei.value.code == 203 and c.state is State.ERROR
    c.set_laser(True)
    c.start_acquisition()
    assert c.state is State.READY
    c.clear_sequence()
    assert c.state is State.CONFIGURED
    c.reset()
    assert c.state is State.IDLE and c.get_settings()["n_features"] == 1024
    assert c.handle(b"ACQ:STAT?\n") == b"IDLE\n"


def test_error_queue_is_fifo_bounded_with_350_and_cleared_by_cls():
    c = Controller()
    for k in range(ERROR_QUEUE_SIZE + 5):
        c.handle(f"CAM:EXP {10**7 + k}\n".encode())
    assert c.handle(b"SYST:ERR:COUN?\n") == str(ERROR_QUEUE_SIZE).encode() + b"\n"
    errors = drain(c)
    assert len(errors) == ERROR_QUEUE_SIZE
    assert [e[0] for e in errors[:-1]] == [-222] * (ERROR_QUEUE_SIZE - 1)
    assert str(10**7) in errors[0][1] and str(10**7 + 1) in errors[1][1]  # oldest first
    assert errors[-1] == (-350, "Queue overflow")
    c.handle(b"NOPE\n")
    c.handle(b"*CLS\n")
    assert c.handle(b"SYST:ERR?\n") == b'0,"No error"\n'


def test_error_responses_and_empty_answer_to_failed_queries():
    c = Controller()
    assert c.handle(b"FETC:FRAM?\n") == b"\n"  # 204 queued, the client is not left hanging
    assert c.handle(b"*IDN?;BOGUS?;*IDN?\n").startswith(b"OpenOPU,") and c.handle(b"SYST:ERR?\n").startswith(
        b'204,"No frames ready')
    assert c.handle(b"SYST:ERR?\n").startswith(b"-113,")
    assert c.handle(b"*IDN 3\n") is None
    assert c.handle(b"SYST:ERR?\n").startswith(b"-113,")  # *IDN has no command form
    assert c.handle(b"*RST 3\n") is None
    assert c.handle(b"SYST:ERR?\n").startswith(b"-108,")
    assert c.handle(b"CAM:ROI 1,2,3\n") is None
    assert c.handle(b"SYST:ERR?\n").startswith(b"-109,")
    assert c.handle(b"CAM:EXP fast\n") is None
    assert c.handle(b"SYST:ERR?\n").startswith(b"-104,")
    assert c.handle(b'SIM:FAUL "x\n') is None
    assert c.handle(b"SYST:ERR?\n").startswith(b"-102,")
    assert c.handle(b"*ESR?\n") == b"40\n"  # command errors (32) + the device error 204 (8)
    assert c.handle(b"*ESR?\n") == b"0\n"


def test_pattern_memory_overflow_and_block_errors():
    c = small(Controller(pattern_memory=8))
    with pytest.raises(FirmwareError) as ei:
        c.upload_patterns(opu.pack_patterns(patterns(9)))
    assert ei.value.code == 201
    assert c.handle(b"SEQ:DATA " + encode_block(bytes(9 * 8)) + b"\n") is None
    assert c.next_error()[0] == 201
    assert c.handle(b"SEQ:DATA " + encode_block(bytes(13)) + b"\n") is None  # not whole patterns
    assert c.next_error()[0] == -160
    c.set_setting("n_features", 60)  # 4 padding bits per pattern must be 0
    assert c.handle(b"SEQ:DATA " + encode_block(b"\x00" * 7 + b"\x01") + b"\n") is None
    assert c.next_error()[0] == -161
    assert c.handle(b"SEQ:DATA #0abc\n") is None
    assert c.next_error()[0] == -160
    assert c.handle(b"SEQ:DATA #15abc\n") is None  # truncated
    assert c.next_error()[0] == -160
    assert c.sequence_length == 0
    c.handle(b"SEQ:DATA " + encode_block(bytes(8 * 8)) + b"\n")
    assert c.sequence_length == 8 and c.handle(b"SEQ:COUN?\n") == b"8\n"


def test_frame_buffer_overflow_is_205():
    c = small(Controller(frame_buffer_bytes=3 * M - 1))
    c.upload_patterns(opu.pack_patterns(patterns(3)))
    with pytest.raises(FirmwareError) as ei:
        c.start_acquisition()
    assert ei.value.code == 205


# ---------------------------------------------------------------------------- frames
def test_frames_equal_an_independent_simulator_of_the_same_config():
    x = patterns(12, seed=1)
    c = small(Controller(opu.realistic(seed=7)))
    got = acquire(c, x)
    ref = opu.Simulator(bench(seed=7), N).acquire(x)
    assert got.dtype == np.uint8 and got.shape == (12, M)
    np.testing.assert_array_equal(got, ref)
    st = c.status()
    assert st["frames_total"] == 12
    assert st["device_time_s"] == pytest.approx(12 * 500e-6, rel=1e-12)
    # the same through the wire format
    payload, _ = parse_block(c.handle(b"FETC:FRAM? 2,5\n"))
    np.testing.assert_array_equal(np.frombuffer(payload, np.uint8).reshape(5, M), ref[2:7])


def test_12_bit_frames_are_little_endian_uint16_on_the_wire():
    x = patterns(4, seed=2)
    c = small(Controller())
    c.set_settings({"bit_depth": 12, "analog_gain_db": 12.0})
    got = acquire(c, x)
    ref = opu.Simulator(bench(bit_depth=12, analog_gain_db=12.0), N).acquire(x)
    assert got.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(got, ref)
    payload, _ = parse_block(c.handle(b"FETC:FRAM?\n"))
    np.testing.assert_array_equal(np.frombuffer(payload, "<u2").reshape(4, M), ref)


def test_batch_split_over_two_sequences_is_bit_identical_to_one_sequence():
    x = patterns(40, seed=3)
    one = acquire(small(Controller(opu.realistic(seed=5))), x)
    c = small(Controller(opu.realistic(seed=5)))
    two = np.concatenate([acquire(c, x[:17]), acquire(c, x[17:])])
    np.testing.assert_array_equal(one, two)
    # scpi path, split differently, same frames
    d = small(Controller(opu.realistic(seed=5)))
    parts = []
    for lo, hi in [(0, 25), (25, 40)]:
        blob = opu.pack_patterns(x[lo:hi]).tobytes()
        d.handle(b"SEQ:DATA " + encode_block(blob) + b";ACQ:STAR\n")
        payload, _ = parse_block(d.handle(b"FETC:FRAM?\n"))
        parts.append(np.frombuffer(payload, np.uint8).reshape(hi - lo, M))
    np.testing.assert_array_equal(one, np.concatenate(parts))


def test_settings_only_matter_when_acquiring_and_reconfigure_keeps_the_clock():
    x = patterns(6, seed=4)
    c = small(Controller())
    a = acquire(c, x)
    c.set_setting("exposure_us", 200.0)
    c.set_setting("n_features", 32)
    c.set_setting("n_features", N)  # the sequence was dropped; the clock was not
    b = acquire(c, x)
    # independent: one simulator, exposure changed between the two batches
    sim = opu.Simulator(bench(), N)
    ra = sim.acquire(x)
    sim.reconfigure(bench(exposure_us=200.0))
    rb = sim.acquire(x)
    np.testing.assert_array_equal(a, ra)
    np.testing.assert_array_equal(b, rb)
    assert c.status()["frames_total"] == 12


def test_noise_off_is_the_ideal_camera_with_the_same_adc():
    x = patterns(5, seed=6)
    c = small(Controller())
    c.set_noise(False)
    got = acquire(c, x)
    cfg = bench().replace(camera={"shot_noise": False, "read_noise_e": 0.0, "dark_current_e_per_s": 0.0,
                                  "prnu_rel": 0.0, "dsnu_e": 0.0}, laser={"power_fluctuation_rel": 0.0})
    sim = opu.Simulator(cfg, N)
    expected = np.clip(np.rint(sim.intensity(x) * sim.photons_per_unit_intensity * 0.6 * 0.025 + 8.0), 0, 255)
    np.testing.assert_array_equal(got, expected.astype(np.uint8))
    assert c.handle(b"SIM:NOIS?\n") == b"0\n"


def test_seed_starts_a_new_unit_and_reproduces_a_fresh_controller():
    x = patterns(5, seed=8)
    fresh = acquire(small(Controller(opu.realistic(seed=11))), x)
    c = small(Controller())
    acquire(c, patterns(7, seed=9))
    c.idle(50.0)
    c.handle(b"SIM:SEED 11\n")
    assert c.seed == 11 and c.status()["frames_total"] == 0 and c.status()["device_time_s"] == 0.0
    np.testing.assert_array_equal(acquire(c, x), fresh)
    assert c.handle(b"SIM:SEED?\n") == b"11\n"


def test_idle_advances_device_time_and_the_medium_drifts():
    x = patterns(8, seed=10)
    c = small(Controller(opu.realistic(seed=3).replace(medium={"drift_time_constant_s": 100.0})))
    c.set_noise(False)
    a = acquire(c, x).astype(float)
    c.handle(b"SIM:IDLE 1000\n")
    assert c.status()["device_time_s"] == pytest.approx(1000.0 + 8 * 500e-6)
    b = acquire(c, x).astype(float)
    # after 10 time constants the speckle is decorrelated
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.3
    t = [float(c.handle(b"STAT:TEMP?\n")), None]
    c.idle(3600.0)
    t[1] = float(c.handle(b"STAT:TEMP?\n"))
    assert 20.0 < t[0] < t[1] < 35.0


def test_config_round_trip_and_validation():
    c = small(Controller())
    payload, _ = parse_block(c.handle(b"SIM:CONF?\n"))
    cfg = opu.OPUConfig.model_validate_json(bytes(payload))
    assert cfg == c.config and cfg.camera.roi.height_px == 16
    twin = cfg.replace(seed=42, camera={"exposure_us": 123.0, "read_noise_e": 5.0})
    assert c.handle(b"SIM:CONF " + encode_block(twin.model_dump_json().encode()) + b"\n") is None
    assert drain(c) == []
    assert c.seed == 42 and c.get_settings()["exposure_us"] == 123.0 and c.get_settings()["n_features"] == N
    assert c.config.camera.read_noise_e == 5.0
    bad = json.loads(twin.model_dump_json())
    bad["camera"]["exposure_us"] = -5
    c.handle(b"SIM:CONF " + encode_block(json.dumps(bad).encode()) + b"\n")
    code, msg = c.next_error()
    assert code == -222 and "exposure_us" in msg and len(msg) < 400
    c.handle(b"SIM:CONF " + encode_block(b"{not json") + b"\n")
    assert c.next_error()[0] == -222
    c.handle(b"SIM:CONF " + encode_block(opu.ideal(0).model_dump_json().encode()) + b"\n")
    code, msg = c.next_error()
    assert code == -222 and "bit_depth" in msg
    assert c.seed == 42  # nothing changed by the refused configs


def test_saturate_fault_and_210_warning():
    c = small(Controller())
    c.upload_patterns(opu.pack_patterns(patterns(3)))
    c.start_acquisition()
    assert c.next_error() == (0, "No error")
    c.handle(b"SIM:FAUL SAT\n")
    c.start_acquisition()
    frames = c.fetch_frames()
    assert (frames == 255).mean() > 0.5
    code, msg = c.next_error()
    assert code == 210 and "ADC maximum" in msg
    c.start_acquisition()  # one-shot
    assert c.next_error() == (0, "No error")


def test_injected_error_and_fault_listing():
    c = Controller()
    c.handle(b"SIM:FAUL ERR,-300;SIM:FAUL DEL,250;SIM:FAUL DROP\n")
    assert c.handle(b"SIM:FAUL?\n") == b"DELAY,DROP\n"
    assert c.next_error()[0] == -300
    c.handle(b"SIM:FAUL CLE\n")
    assert c.handle(b"SIM:FAUL?\n") == b"NONE\n"
    c.handle(b"SIM:FAUL MELT\n")
    assert c.next_error()[0] == -224


def test_bad_constructor_arguments_are_clear():
    with pytest.raises(opu.ConfigError, match="bit_depth"):
        Controller(opu.ideal(0))
    with pytest.raises(opu.ConfigError, match="pattern_memory"):
        Controller(pattern_memory=0)
