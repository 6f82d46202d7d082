"""Recorded exchanges: the VISA driver against docs/protocol.md, not against our emulator.

Every message the driver sends is compared byte for byte with the script, and the replies are
written out here as the protocol document prescribes them (section numbers refer to it). A change
made on both sides of the wire - driver and emulator - that breaks the specification fails here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scripted_wire import DISCONNECT, SILENT, Late, scripted_visa

from drivers import (
    DeviceBusy,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    ProtocolError,
    SaturationWarning,
)
from drivers.visa import VisaDevice

IDN = "OpenOPU,OPU-1140-SIM,SIM0001,1.0.0"  # 4.1
OK = '0,"No error"'  # 4.2
#: power-on values of the default bench (4.3, "Power-on" column), as the device answers the queries
POWER_ON = {"DMD:FEAT": "1024", "CAM:EXP": "400.0", "CAM:FTIM": "500.0", "CAM:BITS": "8", "CAM:GAIN": "0.0",
            "CAM:ROI": "508,928,64,64", "DMD:ROI": "0,0,912,1140", "DMD:MACR": "1"}
#: small device used for acquisitions: 16 features, a 2 x 2-pixel camera ROI (m = 4)
SMALL = {"DMD:FEAT": "16", "CAM:ROI": "0,0,2,2"}


def settings_read(values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """The driver reads every setting back with one query each (after open and configure)."""
    v = {**POWER_ON, **(values or {})}
    return [(f"{h}?", v[h]) for h in POWER_ON]


def opening(values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [("*IDN?", IDN), ("SEQ:MAX?", "4096"), *settings_read(values)]


def checked(command: str | bytes) -> list[tuple[str | bytes, object]]:
    """A set command, then the error-queue read the driver does after it (no error)."""
    return [(command, None), ("SYST:ERR?", OK)]


# ---------------------------------------------------------------------------- open, configure
def test_open_queries_identity_memory_and_settings():
    with scripted_visa(opening()) as dev:
        assert dev.identity.model == "OPU-1140-SIM" and dev.identity.is_simulated
        assert dev.pattern_memory == 4096
        s = dev.settings
        assert (s.n_features, s.exposure_us, s.frame_time_us, s.bit_depth, s.analog_gain_db) == (
            1024, 400.0, 500.0, 8, 0.0)
        assert s.camera_roi.model_dump() == {"row": 508, "col": 928, "height_px": 64, "width_px": 64}
        assert s.input_roi.height_mirrors == 912 and s.macro_pixel_mirrors == 1


def test_configure_raises_the_frame_time_before_a_longer_exposure():
    script = [*opening(), *checked("CAM:FTIM 1000.0"), *checked("CAM:EXP 900.0"),
              *settings_read({"CAM:EXP": "900.0", "CAM:FTIM": "1000.0"})]
    with scripted_visa(script) as dev:
        s = dev.configure(exposure_us=900.0, frame_time_us=1000.0)
    assert (s.exposure_us, s.frame_time_us) == (900.0, 1000.0)


def test_configure_lowers_the_exposure_before_the_frame_time():
    script = [*opening(), *checked("CAM:EXP 100.0"), *checked("CAM:FTIM 200.0"),
              *settings_read({"CAM:EXP": "100.0", "CAM:FTIM": "200.0"})]
    with scripted_visa(script) as dev:
        dev.configure(exposure_us=100, frame_time_us=200)


def test_configure_parks_n_features_at_1_while_the_dmd_layout_changes():
    new = {"CAM:ROI": "0,0,16,16", "DMD:FEAT": "64", "DMD:MACR": "8"}
    script = [*opening(), *checked("CAM:ROI 0,0,16,16"), *checked("DMD:FEAT 1"),
              *checked("DMD:ROI 0,0,912,1140"), *checked("DMD:MACR 8"), *checked("DMD:FEAT 64"),
              *settings_read(new)]
    with scripted_visa(script) as dev:
        s = dev.configure(n_features=64, macro_pixel_mirrors=8,
                          camera_roi={"row": 0, "col": 0, "height_px": 16, "width_px": 16})
    assert s.n_outputs == 256 and s.n_features == 64


def test_configure_bit_depth_and_gain_in_their_formats():
    script = [*opening(), *checked("CAM:BITS 12"), *checked("CAM:GAIN 2.5"),
              *settings_read({"CAM:BITS": "12", "CAM:GAIN": "2.5"})]
    with scripted_visa(script) as dev:
        s = dev.configure(bit_depth=12, analog_gain_db=2.5)
    assert s.frame_dtype == np.uint16


def test_a_refused_setting_raises_the_queued_error_and_rereads_the_settings():
    msg = "Data out of range; exposure_us=450.0 us is out of range; allowed 1.0..300.0 us"
    script = [*opening(), ("CAM:EXP 450.0", None), ("SYST:ERR?", f'-222,"{msg}"'), ("SYST:ERR?", OK),
              *settings_read()]
    with scripted_visa(script) as dev:
        with pytest.raises(DeviceError) as info:
            dev.configure(exposure_us=450.0)  # CAM:FTIM is never sent after the refusal
        assert dev.settings.exposure_us == 400.0
    err = info.value
    assert (err.code, err.device_message, err.command) == (-222, msg, "CAM:EXP 450.0")


def test_a_malformed_settings_reply_is_a_protocol_error():
    script = [("*IDN?", IDN), ("SEQ:MAX?", "4096"), ("DMD:FEAT?", "1024"), ("CAM:EXP?", "fast")]
    with pytest.raises(ProtocolError, match="CAM:EXP\\? reply 'fast' is not a decimal number"), \
            scripted_visa(script):
        pass


# ---------------------------------------------------------------------------- upload, acquire, fetch
PATTERNS = np.zeros((2, 16), np.uint8)
PATTERNS[0, [0, 15]] = 1  # MSB first: feature 0 = bit 7 of byte 0 -> 0x80 0x01
PATTERNS[1, 1:9] = 1  # features 1..7 -> 0x7F, feature 8 -> 0x80
PACKED = b"\x80\x01\x7f\x80"
FRAMES = bytes([0, 1, 2, 255, 10, 20, 30, 40])  # 2 frames x 4 pixels, uint8 (3)


def acquisition(frames_reply: bytes, err: str = OK) -> list[tuple[str | bytes, object]]:
    return [*checked(b"SEQ:DATA #14" + PACKED), ("ACQ:STAR", None), ("SYST:ERR?", err),
            *([("SYST:ERR?", OK)] if err != OK else []), ("FETC:FRAM? 0,2", frames_reply)]


def test_acquire_uploads_a_block_starts_and_fetches_the_frames():
    script = [*opening(SMALL), *acquisition(b"#18" + FRAMES + b"\n")]
    with scripted_visa(script) as dev:
        frames = dev.acquire(PATTERNS)
    assert frames.dtype == np.uint8 and frames.shape == (2, 4)
    np.testing.assert_array_equal(frames.ravel(), list(FRAMES))


def test_10_bit_frames_are_little_endian_uint16():
    values = [0, 1, 513, 1023]
    script = [*opening({**SMALL, "CAM:BITS": "10"}), *checked(b"SEQ:DATA #12\x80\x01"), *checked("ACQ:STAR"),
              ("FETC:FRAM? 0,1", b"#18\x00\x00\x01\x00\x01\x02\xff\x03\n")]
    with scripted_visa(script) as dev:
        frames = dev.acquire(PATTERNS[:1])
    assert frames.dtype == np.uint16
    np.testing.assert_array_equal(frames, [values])


def test_a_saturation_warning_keeps_the_frames():
    warn = '210,"Frames saturated; 1 of 8 pixels at the ADC maximum 255 DN (lower the exposure or gain)"'
    script = [*opening(SMALL), *acquisition(b"#18" + FRAMES + b"\n", err=warn)]
    with scripted_visa(script) as dev, pytest.warns(SaturationWarning, match="1 of 8 pixels"):
        frames = dev.acquire(PATTERNS)
    assert frames.shape == (2, 4)


def test_fetch_without_frames_gets_an_empty_reply_and_raises_the_queued_error():
    script = [*opening(SMALL), ("FETC:FRAM? 0,2", ""),
              ("SYST:ERR?", '204,"No frames ready; run ACQ:STAR first"'), ("SYST:ERR?", OK)]
    with scripted_visa(script) as dev, pytest.raises(DeviceError) as info:
        dev.fetch_frames(0, 2)
    assert (info.value.code, info.value.command) == (204, "FETC:FRAM? 0,2")


def test_fetch_all_frames_asks_the_count_first():
    script = [*opening(SMALL), ("FETC:COUN?", "2"), ("FETC:FRAM? 0,2", b"#18" + FRAMES + b"\n")]
    with scripted_visa(script) as dev:
        assert dev.fetch_frames().shape == (2, 4)


def test_a_corrupted_block_header_is_a_protocol_error_and_the_rest_is_discarded():
    script = [*opening(SMALL), ("FETC:FRAM? 0,2", b"#X8" + FRAMES + b"\n"),
              ("STAT:LAS?", "1"), ("STAT:TEMP?", "24.5"), ("STAT:FRAM?", "2"), ("STAT:TIME?", "0.001")]
    with scripted_visa(script) as dev:
        with pytest.raises(ProtocolError, match="digit count"):
            dev.fetch_frames(0, 2)
        assert dev.wire.flushed == len(FRAMES) + 2  # "8", the payload and "\n"
        assert dev.status().temperature_c == 24.5  # the connection is still in step


def test_a_block_of_the_wrong_length_is_a_protocol_error():
    script = [*opening(SMALL), ("FETC:FRAM? 0,2", b"#17" + FRAMES[:7] + b"\n")]
    with scripted_visa(script) as dev, pytest.raises(ProtocolError, match="block holds 7 bytes, expected 8"):
        dev.fetch_frames(0, 2)


# ---------------------------------------------------------------------------- errors on text queries
def test_an_empty_reply_with_a_queued_error_is_a_device_error():
    script = [*opening(), ("STAT:LAS?", ""), ("SYST:ERR?", '-200,"Execution error; sensor offline"'),
              ("SYST:ERR?", OK)]
    with scripted_visa(script) as dev, pytest.raises(DeviceError) as info:
        dev.status()
    assert (info.value.code, info.value.command) == (-200, "STAT:LAS?")
    assert info.value.device_message == "Execution error; sensor offline"


def test_an_empty_reply_without_a_queued_error_is_a_protocol_error():
    script = [*opening(), ("STAT:LAS?", ""), ("SYST:ERR?", OK)]
    with scripted_visa(script) as dev, pytest.raises(ProtocolError, match="empty reply to 'STAT:LAS\\?'"):
        dev.status()


def test_the_error_queue_is_read_until_empty_and_the_first_error_is_raised():
    script = [*opening(), ("SIM:SEED 7", None), ("SYST:ERR?", '-221,"Settings conflict; first"'),
              ("SYST:ERR?", '-350,"Queue overflow"'), ("SYST:ERR?", OK)]
    with scripted_visa(script) as dev, pytest.raises(DeviceError, match="first") as info:
        dev.set_seed(7)
    assert info.value.code == -221


# ---------------------------------------------------------------------------- timeouts
def test_an_idempotent_query_is_sent_again_once_and_the_owed_reply_is_drained():
    script = [*opening(), ("STAT:LAS?", Late("1")), ("STAT:LAS?", "1"),
              ("STAT:TEMP?", "24.5"), ("STAT:FRAM?", "10"), ("STAT:TIME?", "0.005")]
    with scripted_visa(script) as dev:
        st = dev.status()  # the reply to the second STAT:LAS? is read and dropped before STAT:TEMP?
        assert dev.retries == 1
    assert (st.laser_on, st.temperature_c, st.frames_total, st.device_time_s) == (True, 24.5, 10, 0.005)


def test_an_idempotent_query_times_out_after_one_retry():
    script = [*opening(), ("STAT:LAS?", SILENT), ("STAT:LAS?", SILENT)]
    with scripted_visa(script) as dev, pytest.raises(DeviceTimeout):
        dev.status()


def test_a_raw_query_is_not_resent_and_its_late_reply_is_drained_before_the_next():
    script = [*opening(), ("SEQ:COUN?", Late("3")), ("FETC:COUN?", "0")]
    with scripted_visa(script) as dev:
        with pytest.raises(DeviceTimeout):
            dev.query("SEQ:COUN?")
        assert dev.query("FETC:COUN?") == "0"  # the late "3" is not taken for this answer
        assert dev.retries == 0


def test_a_frame_fetch_is_retried_once_and_the_owed_block_is_drained():
    block = b"#18" + FRAMES + b"\n"
    script = [*opening(SMALL), ("FETC:FRAM? 0,2", Late(block)), ("FETC:FRAM? 0,2", block),
              ("FETC:COUN?", "2")]
    with scripted_visa(script) as dev:
        np.testing.assert_array_equal(dev.fetch_frames(0, 2).ravel(), list(FRAMES))
        assert dev.retries == 1
        assert dev.query("FETC:COUN?") == "2"  # after skipping the second block


def test_a_block_that_stalls_half_way_is_not_retried():
    script = [*opening(SMALL), ("FETC:FRAM? 0,2", b"#18" + FRAMES[:3])]
    with scripted_visa(script) as dev, pytest.raises(DeviceTimeout):
        dev.fetch_frames(0, 2)
    assert dev.retries == 0


def test_acquisition_start_is_never_resent():
    script = [*opening(SMALL), *checked(b"SEQ:DATA #14" + PACKED), ("ACQ:STAR", None),
              ("SYST:ERR?", SILENT), ("SYST:ERR?", SILENT)]
    with scripted_visa(script) as dev, pytest.raises(DeviceTimeout):
        dev.acquire(PATTERNS)  # SYST:ERR? is resent (idempotent), ACQ:STAR never


# ---------------------------------------------------------------------------- connection
def test_a_closed_connection_closes_the_device():
    script = [*opening(), ("STAT:LAS?", DISCONNECT)]
    with scripted_visa(script) as dev:
        with pytest.raises(DeviceDisconnected):
            dev.status()
        assert not dev.is_open


def test_a_busy_greeting_is_device_busy():
    from scripted_wire import ScriptedWire

    script = [("*IDN?", '!BUSY,"device in use by 10.0.0.2:41000"')]
    dev = VisaDevice("TCPIP::opu.lab::5025::SOCKET", wire_factory=lambda r, t: ScriptedWire(script, r, t))
    with pytest.raises(DeviceBusy, match=r"10\.0\.0\.2:41000"):
        dev.open()
    assert not dev.is_open


# ---------------------------------------------------------------------------- SIM: subsystem and faults
def test_sim_commands_and_faults_in_their_protocol_forms():
    script = [*opening(),
              *checked("SIM:SEED 3"), *checked("SIM:NOIS OFF"), *checked("SIM:IDLE 2.5"),
              *checked("SIM:CLOC 10,0.5"),
              *checked("SIM:FAUL SATURATE"), *checked("SIM:FAUL TRUNCATE"), *checked("SIM:FAUL CORRUPT"),
              *checked("SIM:FAUL DROP"), *checked("SIM:FAUL CLEAR"),
              # an armed delay or an injected error would be consumed by an immediate SYST:ERR?
              ("SIM:FAUL DELAY,450", None), ("SIM:FAUL ERROR,299", None)]
    with scripted_visa(script) as dev:
        dev.set_seed(3)
        dev.set_noise(False)
        dev.wait(2.5)
        dev.sync_clock(10, 0.5)
        for kind in ("SAT", "TRUNC", "CORRupt", "DROP", "CLE"):
            dev.inject_fault(kind)
        dev.inject_fault("DEL", 450)
        dev.inject_fault("ERR", 299)


def test_sim_config_is_read_as_a_json_block():
    doc = json.dumps({"seed": 5}).encode()
    script = [*opening(), ("SIM:CONF?", b"#2%d%s\n" % (len(doc), doc))]
    with scripted_visa(script) as dev:
        assert json.loads(dev._sim_config_json()) == {"seed": 5}
