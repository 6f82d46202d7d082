"""PNG plots of a calibration report, one figure per measurement (matplotlib).

No backend is forced: headless, matplotlib picks Agg itself; in a notebook the figures stay inline.
Each figure is closed after saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .report import CalibrationReport


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_report(r: CalibrationReport, out: Path) -> list[Path]:
    """Write the plots the report has data for; returns their paths."""
    out = Path(out)
    paths = []
    p = r.photon_transfer
    if p is not None:
        x, v, se = np.array(p.bin_signal_dn), np.array(p.bin_var_dn2), np.array(p.bin_var_se_dn2)
        K, c = p.system_gain_dn_per_e.value, p.ptc_offset_dn2.value
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(x, v, yerr=se, fmt="o", ms=3, label="binned per-pixel temporal variance")
        xx = np.linspace(0, x.max(), 200)
        ax.plot(xx, K * xx + c, "-", label=f"fit K = {K:.4g} DN/e-")
        ax.axvline(p.fit_max_signal_dn, ls=":", c="gray", label="70 % of saturation")
        if p.saturation_dn.value:
            ax.axvline(p.saturation_dn.value, ls="--", c="r", label="saturation")
        ax.set(xlabel="mu_y - mu_y.dark (DN)", ylabel="sigma_y^2 (DN^2)", title="Photon transfer")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / "photon_transfer.png"))
        fig, ax = plt.subplots(figsize=(6, 4))
        mu_e = x / K
        ax.loglog(mu_e, x / np.sqrt(v), "o", ms=3, label="measured")
        sd = r.dark.read_noise_e.value if r.dark and r.dark.read_noise_e else 0.0
        ee = np.geomspace(max(mu_e.min(), 1e-2), mu_e.max(), 200)
        ax.loglog(ee, ee / np.sqrt(ee + (sd or 0) ** 2 + 1 / (12 * K * K)), "-", label="EMVA model")
        ax.loglog(ee, np.sqrt(ee), ":", c="gray", label="ideal (shot noise only)")
        ax.set(xlabel="signal (e-)", ylabel="SNR", title="Signal-to-noise ratio")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / "snr.png"))
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(p.linearity_levels_pct, p.linearity_deviation_pct, "o-")
        ax.axhline(0, c="gray", lw=0.8)
        ax.set(xlabel="signal (% of saturation)", ylabel="deviation from linearity (%)", title="Linearity")
        paths.append(_save(fig, out / "linearity.png"))
    d = r.dark
    if d is not None:
        fig, axs = plt.subplots(1, 2, figsize=(9, 3.6))
        axs[0].plot(d.exposures_us, d.mean_dn, "o-", label="operating gain")
        axs[1].plot(d.exposures_us, d.temporal_var_dn2, "o-", label="operating gain")
        if d.boost_gain_db is not None:
            axs[0].plot(d.boost_exposures_us, d.boost_mean_dn, "s-", label=f"{d.boost_gain_db:g} dB")
            axs[1].plot(d.boost_exposures_us, d.boost_temporal_var_dn2, "s-", label=f"{d.boost_gain_db:g} dB")
        for a, yl in zip(axs, ("mean dark value (DN)", "temporal dark variance (DN^2)"), strict=True):
            a.set(xscale="log", xlabel="exposure (us)", ylabel=yl)
            a.legend(fontsize=8)
        fig.suptitle("Dark")
        paths.append(_save(fig, out / "dark.png"))
    s = r.stability
    if s is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        t = np.array(s.times_s)
        ax.errorbar(t, s.correlation, yerr=s.correlation_se, fmt="o", label="repeated projections")
        tau = s.decorrelation_time_s
        if tau.value and tau.bound is None:
            tt = np.linspace(0, t.max(), 200)
            ax.plot(tt, s.repeat_correlation * np.exp(-2 * tt / tau.value), "-", label=f"tau = {tau}")
        ax.set(xlabel="device time (s)", ylabel="intensity correlation", title="Stability")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / "stability.png"))
    ls = r.linear_snr
    if ls is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for sc in ls.schemes:
            ax.plot(sc.exposures_us, sc.snr, "o-", label=sc.scheme)
            sat = [e for e, f in zip(sc.exposures_us, sc.saturated, strict=True) if f]
            if sat:
                ax.plot(sat, [sc.snr[sc.exposures_us.index(e)] for e in sat], "rx")
        ax.axvline(ls.operating_exposure_us, ls=":", c="gray", label="operating exposure")
        ax.set(xscale="log", yscale="log", xlabel="exposure (us)", ylabel="SNR (power)",
               title="Linear projections (x: saturated)")
        ax.legend(fontsize=8)
        paths.append(_save(fig, out / "linear_snr.png"))
    return paths
