"""The machine's measured speed behind ``--preset auto`` (mnemos.calibrate)."""

import json

import pytest

from mnemos.calibrate import Calibration, SpeedModel, flops_per_token, machine_key, speed_model, time_steps
from mnemos.config import ModelConfig


def shape(L, C, V=257, T=16):
    return ModelConfig(vocab_size=V, n_layer=L, n_head=2, n_embd=C, block_size=T)


def test_flops_per_token_counts_blocks_head_and_attention():
    cfg = shape(2, 32, V=100, T=8)
    assert flops_per_token(cfg) == 3 * (2 * (2 * 12 * 32 * 32 + 100 * 32) + 2 * 2 * 8 * 32)


def test_speed_model_recovers_overhead_and_rate():
    truth = SpeedModel(2e-6, 50e9)
    points = [(cfg, truth.tokens_per_s(cfg)) for cfg in (shape(1, 32), shape(2, 64), shape(4, 128))]
    fitted = speed_model(points)
    assert fitted.overhead_s == pytest.approx(2e-6, rel=1e-6)
    assert fitted.flops_per_s == pytest.approx(50e9, rel=1e-6)
    one = speed_model(points[:1])
    assert one.overhead_s == 0 and one.tokens_per_s(points[0][0]) == pytest.approx(points[0][1])


def test_speed_model_where_noise_beats_the_trend_keeps_the_mean_rate():
    points = [(shape(1, 32), 1000.0), (shape(4, 128), 5000.0)]  # the bigger shape "faster": noise
    fitted = speed_model(points)
    assert fitted.overhead_s == 0 and fitted.flops_per_s > 0


def test_time_steps_trains_and_reports_tokens_per_second():
    assert time_steps(shape(1, 16, T=8), batch=2, workers=1, steps=1) > 0


def test_calibration_caches_per_machine_shape_and_workers(tmp_path):
    calls = []

    def timer(cfg, batch, workers, device="cpu"):
        calls.append((cfg.n_embd, batch, workers))
        return 1000.0 * cfg.n_embd

    one = Calibration(tmp_path, workers=1, timer=timer)
    assert one.tokens_per_s(shape(1, 32), 4) == 32000.0
    assert one.tokens_per_s(shape(1, 32), 4) == 32000.0
    assert one.tokens_per_s(shape(1, 32), 8) == 32000.0  # another batch is another entry
    assert calls == [(32, 4, 1), (32, 8, 1)] and one.measured == 2
    assert Calibration(tmp_path, workers=1, timer=timer).tokens_per_s(shape(1, 32), 4) == 32000.0
    assert len(calls) == 2  # a new object reads the file
    Calibration(tmp_path, workers=2, timer=timer).tokens_per_s(shape(1, 32), 4)
    assert calls[-1] == (32, 4, 2)  # other worker counts are measured apart
    data = json.loads((tmp_path / "calibration-v1.json").read_text())
    assert set(data) == {machine_key(1), machine_key(2)}


def test_a_damaged_cache_is_measured_again(tmp_path):
    (tmp_path / "calibration-v1.json").write_text("{not json")
    cal = Calibration(tmp_path, timer=lambda cfg, batch, workers, device="cpu": 5.0)
    assert cal.tokens_per_s(shape(1, 32), 4) == 5.0 and cal.measured == 1
    json.loads((tmp_path / "calibration-v1.json").read_text())  # rewritten whole


def test_calibration_is_bounded_in_time_cheapest_shape_first(tmp_path):
    """A fake clock that the fake timer advances: 1,000 tokens/s whatever the shape, so a
    shape costs 3 steps x batch x T / 1000 seconds."""
    now = [0.0]
    timed = []

    def timer(cfg, batch, workers, device="cpu"):
        now[0] += 3 * batch * cfg.block_size / 1000
        timed.append(cfg.n_embd)
        return 1000.0

    shapes = [(shape(4, 128, T=64), 16), (shape(1, 16, T=64), 4), (shape(2, 64, T=64), 8)]  # 3.1, 0.8, 1.5 s
    cal = Calibration(tmp_path, timer=timer, clock=lambda: now[0])
    cal.model(shapes, limit_s=2.0)
    assert timed == [16]  # the cheapest; then 64 was predicted to end past 2 s (it would have: 0.8 + 1.5)
    cal.model(shapes, limit_s=0.1)
    assert timed == [16]  # the cheapest is cached: nothing measured, nothing over
    cal.model(shapes, limit_s=None)
    assert timed == [16, 64, 128]  # unbounded: every shape
    assert cal.cached(shapes[0][0], 16) == 1000.0 and cal.cached(shape(8, 8), 1) is None


def test_limit_for_a_budget():
    from mnemos.calibrate import LIMIT_S, limit_for

    assert limit_for(None) == LIMIT_S == limit_for(3600) and limit_for(60) == pytest.approx(3.0) and LIMIT_S < 10
