"""The controller's parts at their own seams: the error queue and status registers, the fault plan
on canned responses, the settings transaction. Expected values come from docs/protocol.md."""

from __future__ import annotations

import pytest

import opu
from firmware_models import FirmwareError
from firmware_models.faults import FaultPlan
from firmware_models.settings import SettingsTxn, device_size, power_on_settings
from firmware_models.status import ErrorQueue

PAYLOAD = bytes(range(8))
BLOCK = [b"1", b";", b"#18", PAYLOAD, b"\n"]  # "SEQ:COUN?;SEQ:DATA?" answered
AT = (2, 3, 8)  # the block header is chunk 2, 3 bytes long, 8 payload bytes


def test_error_queue_overflow_and_status_registers():
    q = ErrorQueue()
    for i in range(40):
        q.push(-222 if i % 2 else 201, f"e{i}")
    assert len(q) == 32  # section 5: 32 entries, the last replaced by -350
    entries = [q.next() for _ in range(32)]
    assert entries[0] == (201, "e0") and entries[29] == (-222, "e29")
    assert entries[31] == (-350, "Queue overflow")
    assert q.next() == (0, "No error") and q.stb == 32  # queue empty, ESR still set
    assert q.read_esr() == 16 | 8 and q.read_esr() == 0  # execution (-2xx), device (positive codes)
    q.push(-102, "x")
    q.push(-410, "y")
    q.operation_complete()
    assert q.stb == 4 | 32 and q.read_esr() == 32 | 4 | 1
    q.clear()
    assert len(q) == 0 and q.stb == 0


def test_transport_faults_shape_the_next_block_once():
    plan, errors = FaultPlan(), ErrorQueue()
    plan.arm("TRUN", None, errors)
    assert plan.shape(list(BLOCK), AT).data == b"1;#1\n"  # '#<n>' and half of the 1 length digit
    assert plan.shape(list(BLOCK), AT).data == b"1;#18" + PAYLOAD + b"\n"  # fired once
    plan.arm("CORRUPT", None, errors)
    assert plan.shape(list(BLOCK), AT).data == b"1;#X8" + PAYLOAD + b"\n"
    plan.arm("DROP", None, errors)
    assert plan.shape([b"1\n"], None).data == b"1\n"  # no block: DROP waits for one
    reply = plan.shape(list(BLOCK), AT)
    assert reply.data == b"1;#18" + PAYLOAD[:4] and reply.close_after
    plan.arm("DEL", 250, errors)
    assert plan.shape([b"1\n"], None).delay_s == 0.25 and plan.shape([b"1\n"], None).delay_s == 0.0


def test_fault_arguments_and_injected_errors():
    plan, errors = FaultPlan(), ErrorQueue()
    plan.arm("ERR", 299, errors)
    assert errors.next() == (299, "Device error; injected by SIM:FAULt") and not plan.pending
    for kind, arg, code in [("DEL", None, -109), ("ERR", None, -109), ("SAT", 3, -108), ("ERR", 0, -222),
                            ("DEL", 600_001, -222), ("BOOM", None, -224)]:
        with pytest.raises(FirmwareError) as info:
            plan.arm(kind, arg, errors)
        assert info.value.code == code, kind
    plan.arm("SATURATE", None, errors)
    plan.arm("DELAY", 1, errors)
    assert set(plan.pending) == {"SATURATE", "DELAY"}
    plan.arm("CLE", None, errors)
    assert plan.pending == {} and plan.take("SATURATE") is None


def test_settings_transaction_commits_or_rolls_back_as_a_whole():
    config = opu.realistic(seed=0)
    txn = SettingsTxn(power_on_settings(config), device_size(config))
    before = txn.snapshot()
    txn.stage("exposure_us", 450.0)  # > frame time 500? no: consistent
    txn.stage("frame_time_us", 460.0)
    assert txn.commit() == before and txn.values["frame_time_us"] == 460.0
    assert txn.commit() is None  # nothing staged
    txn.stage("exposure_us", 470.0)  # 470 > 460: the result is inconsistent
    with pytest.raises(FirmwareError) as info:
        txn.commit()
    assert info.value.code == -221 and txn.values["exposure_us"] == 450.0
    txn.stage("bit_depth", 8)  # same value: nothing changed
    assert txn.commit() is None
    with pytest.raises(FirmwareError) as info:
        txn.stage("camera_roi", {"row": 1070, "col": 0, "height_px": 16, "width_px": 16})
    assert info.value.code == -222 and "1080x1920-px sensor" in info.value.message
