"""The figures of the ISTRC analysis (spec "Figures/plots to regenerate", items 1-6).

Every image is decoded as the circle decodes, D_dec(F(z)) (``stages.Circle``; never G), clamped
to [-1, 1] and shown on [0, 1]. Each function writes its PNG(s) into ``out_dir`` and returns the
file names and the few numbers the figure shows.

1. ``fig1_edit_strips.png``: per figure set (the paper's Figs. 1 and 2) one test person, one row
   per edited attribute: input x, circle x^, decode(z_50) ... decode(z_500), C_a under each;
2. ``fig2_circle.png`` (x beside x^), ``fig2_interpolation.png`` (slerp and linear rows between
   two test faces, 10 frames), ``fig2_noise_grid.png`` (8 x 8: decode(z) at (1, 1), then
   decode(normalise(z + eps_j)), sigma 0.02);
3. ``fig3_averages.png`` (2 and 4 inputs -> incremental slerp mean, normalised and raw mean) and
   ``fig3_raw_mean_norm.png`` (||sum q_i / n|| of n = 2..64 test faces and of uniform unit vectors);
4. ``fig4_arithmetic.png``: a - b + c, normalised and raw, for each set of ``ARITHMETIC_SETS``;
5. ``fig5_confounds.png``: +makeup on men, +beard on women, the judge's Male probability under
   every image;
6. ``fig6_curves.png``: C_a(z_t) and ||z_t - z_0|| versus t for each Fig. 1 strip, and the BEGAN
   run's M_global and k_t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.utils import save_image

from callbacks.panels import figure_to_image, image_table, new_figure
from experiments.istrc.directions import CONFOUNDS, FIGURE_SETS, direction_name, target_of
from experiments.istrc.evaluation import Context, EditSettings, to_unit
from experiments.istrc.latent_sets import (
    ARITHMETIC_SETS,
    arithmetic_latents,
    arithmetic_rows,
    averages,
    pick_rows,
    raw_mean_norms,
    strip_person,
)
from experiments.istrc.stages import Circle
from lightning_modules.istrc.edit_path import EditPath, semantic_transformation
from lightning_modules.istrc.sphere import interpolation_mus, lerp, noise_variations, slerp

__all__ = [
    "Strip",
    "arithmetic_figure",
    "averages_figures",
    "circle_figures",
    "confounds_figure",
    "curves_figure",
    "edit_strips",
]

PERSONS = "ABCDEFGH"
GRID_CELL = 96  # px: the noise grid's cells are enlarged to about this side


@dataclass
class Strip:
    """One edit strip of Fig. 1 for Fig. 6's curves: its label and C_a(z_t), ||z_t - z_0||."""

    label: str
    probabilities: list[float]
    distances: list[float]


def _save(image: Any, out_dir: Path, name: str) -> str:
    image.save(out_dir / name)
    return name


def _path(ctx: Context, classifiers: Any, attribute: str, z0: Tensor, target: int, s) -> EditPath:
    network = classifiers.logit_network(attribute)
    path = semantic_transformation(
        network, z0.to(ctx.device), target, s.steps, s.every, s.step_distance
    )
    return EditPath(*(part.cpu() for part in path))


def _columns(settings: EditSettings) -> list[str]:
    snapshots = range(settings.every, settings.steps + 1, settings.every)
    return ["input x", "circle x^", *(f"t = {t}" for t in snapshots)]


def edit_strips(
    ctx: Context, circle: Circle, classifiers: Any, settings: EditSettings, out_dir: Path
) -> tuple[dict[str, Any], list[Strip]]:
    """Fig. 1: the paper's edit sets, one test person per set (the one most edits apply to)."""
    test, rows, titles, captions, strips, persons = ctx.test, [], [], [], [], []
    for k, attributes in enumerate(FIGURE_SETS):
        known = [a for a in attributes if a in classifiers.attributes and a in test.names]
        missing = sorted(set(attributes) - set(known))
        if missing:
            ctx.notes.append(f"Fig. 1 set {k + 1}: no classifier or label for {missing}")
        if not known:
            continue
        edits = {a: target_of(a) for a in known}
        person = strip_person(test.labels, test.names, edits, ctx.generator(21 + k), persons)
        persons.append(person)
        z0 = test.z[person : person + 1]
        x_hat = circle.decode(z0)[0]
        for attribute in known:
            path = _path(ctx, classifiers, attribute, z0, edits[attribute], settings)
            images = circle.decode(path.snapshots[:, 0])
            p = path.probabilities[:, 0]
            label = f"{PERSONS[len(persons) - 1]}: {direction_name(attribute)}"
            rows.append([to_unit(test.images[person]), to_unit(x_hat), *to_unit(images)])
            step_p = p[settings.every :: settings.every].tolist()
            captions.append(["", f"C {p[0]:.2f}", *(f"C {v:.2f}" for v in step_p)])
            titles.append(label)
            strips.append(Strip(label, p.tolist(), path.distances[:, 0].tolist()))
    if not rows:
        raise ValueError("Fig. 1: none of the figure sets' attributes has a classifier")
    table = image_table(
        rows,
        _columns(settings),
        row_titles=titles,
        title="Edit strips: C = the latent classifier's probability of the attribute",
        captions=captions,
    )
    return {
        "figure": _save(table, out_dir, "fig1_edit_strips.png"),
        "persons": [test.image_id[p] for p in persons],
        "rows": titles,
    }, strips


def circle_figures(
    ctx: Context, circle: Circle, x_hat: Tensor, out_dir: Path, pairs: int = 8
) -> dict[str, Any]:
    """Fig. 2: circle pairs, the slerp and linear interpolation, the noise grid."""
    test, g = ctx.test, ctx.generator(31)
    shown = _distinct_identities(test.identity, pairs, g)
    cells = [item for i in shown.tolist() for item in (to_unit(test.images[i]), to_unit(x_hat[i]))]
    per_row = 8 if len(cells) >= 8 else len(cells)
    rows = [cells[i : i + per_row] for i in range(0, len(cells) - per_row + 1, per_row)]
    table = image_table(rows, ["x", "x^"] * (per_row // 2), title="Circle: x and D_dec(F(E(x)))")
    names = {"circle": _save(table, out_dir, "fig2_circle.png")}
    a, b = shown[0].item(), shown[1].item()
    mus = interpolation_mus(10, dtype=test.z.dtype)
    paths = {"slerp": slerp(test.z[a], test.z[b], mus), "linear": lerp(test.z[a], test.z[b], mus)}
    rows, captions = [], []
    for z in paths.values():
        decoded = to_unit(circle.decode(z))
        rows.append([to_unit(test.images[a]), *decoded, to_unit(test.images[b])])
        captions.append(["", *(f"|z| {n:.2f}" for n in z.norm(dim=1).tolist()), ""])
    columns = ["x_a", *(f"mu {m:.2f}" for m in mus.tolist()), "x_b"]
    table = image_table(rows, columns, ["slerp", "linear"], "Interpolation", captions)
    names["interpolation"] = _save(table, out_dir, "fig2_interpolation.png")
    z = test.z[a]
    noisy = noise_variations(z, count=63, sigma=0.02, generator=ctx.generator(32))
    grid = to_unit(circle.decode(torch.cat([z[None], noisy])))
    scale = max(1, GRID_CELL // grid.shape[-1])  # small faces enlarged, pixels kept (nearest)
    grid = torch.nn.functional.interpolate(grid, scale_factor=scale, mode="nearest")
    save_image(grid, out_dir / "fig2_noise_grid.png", nrow=8, padding=2)
    names["noise_grid"] = "fig2_noise_grid.png"
    linear_norm = paths["linear"].norm(dim=1).min().item()
    return {
        "figures": names,
        "interpolation_ids": [test.image_id[a], test.image_id[b]],
        "linear_min_norm": linear_norm,
        "noise_cosine_mean": (noisy @ z).mean().item(),
    }


def _distinct_identities(identity: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Up to ``count`` rows of different identities, in a seeded order."""
    chosen, seen = [], set()
    for row in torch.randperm(identity.numel(), generator=generator).tolist():
        if int(identity[row]) not in seen:
            seen.add(int(identity[row]))
            chosen.append(row)
        if len(chosen) == count:
            break
    if len(chosen) < 2:
        raise ValueError("the figures need test images of at least two identities")
    return torch.tensor(chosen)


def averages_figures(ctx: Context, circle: Circle, out_dir: Path) -> dict[str, Any]:
    """Fig. 3: averages of 2 and 4 faces, and the raw mean's norm for n = 2..64."""
    test = ctx.test
    shown = _distinct_identities(test.identity, 4, ctx.generator(41))
    blank = torch.ones_like(test.images[0])
    rows, norms = [], {}
    for n in (2, 4):
        picked = shown[:n]
        means = averages(test.z[picked])
        decoded = to_unit(circle.decode(torch.stack(list(means.values()))))
        inputs = [to_unit(test.images[i]) for i in picked.tolist()]
        rows.append([*inputs, *[blank] * (4 - n), *decoded])
        norms[n] = {kind: value.norm().item() for kind, value in means.items()}
    columns = ["face 1", "face 2", "face 3", "face 4", "slerp mean", "normalised mean", "raw mean"]
    captions = [["", "", "", "", *(f"|m| {v:.2f}" for v in norms[n].values())] for n in (2, 4)]
    table = image_table(rows, columns, ["2 faces", "4 faces"], "Average faces", captions)
    sizes = list(range(2, min(64, test.z.shape[0]) + 1))
    curve = raw_mean_norms(test.z, sizes, ctx.generator(42))
    fig = new_figure(5.0, 3.4)
    ax = fig.subplots()
    ax.plot(curve["n"], curve["faces"], marker="o", markersize=2, label="test faces (E(x))")
    ax.plot(curve["n"], curve["uniform"], marker="o", markersize=2, label="uniform unit vectors")
    ax.plot(curve["n"], [n**-0.5 for n in curve["n"]], "--", color="grey", label="1 / sqrt(n)")
    ax.set_xlabel("n faces")
    ax.set_ylabel("||sum q_i / n||")
    ax.set_ylim(0, 1.05)
    ax.set_title("Norm of the raw (linear) mean of n unit latents", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return {
        "figures": {
            "averages": _save(table, out_dir, "fig3_averages.png"),
            "raw_mean_norm": _save(figure_to_image(fig), out_dir, "fig3_raw_mean_norm.png"),
        },
        "mean_norms": norms,
        "raw_mean_norm": {
            "faces_n2": curve["faces"][0],
            "faces_nmax": curve["faces"][-1],
            "uniform_nmax": curve["uniform"][-1],
            "nmax": curve["n"][-1],
        },
    }


def arithmetic_figure(ctx: Context, circle: Circle, out_dir: Path) -> dict[str, Any]:
    """Fig. 4: a - b + c (normalised and raw) for each set the test labels allow."""
    test, rows, titles, captions, used = ctx.test, [], [], [], []
    for k, (title, conditions) in enumerate(ARITHMETIC_SETS):
        needed = {name for condition in conditions for name in condition}
        if not needed <= set(test.names):
            ctx.notes.append(
                f"Fig. 4 '{title}' skipped: the cache lacks {needed - set(test.names)}"
            )
            continue
        picked = arithmetic_rows(
            test.labels, test.identity, test.names, conditions, ctx.generator(51 + k)
        )
        if picked is None:
            ctx.notes.append(f"Fig. 4 '{title}' skipped: no test image for one of a, b, c")
            continue
        results = arithmetic_latents(test.z, picked)
        decoded = to_unit(circle.decode(torch.stack([results["normalised"], results["raw"]])))
        rows.append([*(to_unit(test.images[i]) for i in picked), *decoded])
        raw_norm = results["raw"].norm().item()
        captions.append(["", "", "", "|z| 1.00", f"|z| {raw_norm:.2f}"])
        titles.append(title.replace(" - ", "\n- ").replace(" + ", "\n+ "))
        used.append({"title": title, "ids": [test.image_id[i] for i in picked]})
    if not rows:
        raise ValueError("Fig. 4: no arithmetic set has test images for a, b and c")
    columns = ["a", "b", "c", "a - b + c\nnormalised", "a - b + c\nraw"]
    table = image_table(rows, columns, titles, "Latent arithmetic", captions)
    return {"figure": _save(table, out_dir, "fig4_arithmetic.png"), "sets": used}


def confounds_figure(
    ctx: Context,
    circle: Circle,
    classifiers: Any,
    settings: EditSettings,
    out_dir: Path,
    per_group: int = 2,
) -> dict[str, Any]:
    """Fig. 5: +makeup on men, +beard on women; the judge's Male probability along each strip."""
    test, judge = ctx.test, ctx.judge
    rows, titles, captions, groups = [], [], [], {}
    male = judge.column("Male")
    for k, confound in enumerate(CONFOUNDS):
        if confound.attribute not in classifiers.attributes:
            ctx.notes.append(f"Fig. 5 '{confound.title}' skipped: no classifier")
            continue
        conditions = {"Male": confound.male, confound.attribute: 1 - confound.target}
        picked = pick_rows(test.labels, test.names, conditions, per_group, ctx.generator(61 + k))
        if picked.numel() == 0:
            ctx.notes.append(f"Fig. 5 '{confound.title}' skipped: no such test input")
            continue
        z0 = test.z[picked]
        path = _path(ctx, classifiers, confound.attribute, z0, confound.target, settings)
        x_hat = circle.decode(z0)
        frames = circle.decode(path.snapshots.flatten(0, 1)).unflatten(0, path.snapshots.shape[:2])
        p_hat, p_frames = judge.probs(x_hat)[:, male], judge.probs(frames.flatten(0, 1))[:, male]
        p_frames = p_frames.unflatten(0, frames.shape[:2])  # (S, B)
        for i, row in enumerate(picked.tolist()):
            images = [to_unit(test.images[row]), to_unit(x_hat[i]), *to_unit(frames[:, i])]
            rows.append(images)
            probs = [p_hat[i].item(), *p_frames[:, i].tolist()]
            captions.append(["", *(f"Male {p:.2f}" for p in probs)])
            titles.append(confound.title)
        groups[confound.title] = {
            "inputs": int(picked.numel()),
            "judge_male_before": p_hat.mean().item(),
            "judge_male_after": p_frames[-1].mean().item(),
        }
    if not rows:
        raise ValueError("Fig. 5: no confound edit applies")
    table = image_table(
        rows,
        _columns(settings),
        titles,
        "Confounds: the judge's Male probability along the strip",
        captions,
    )
    return {"figure": _save(table, out_dir, "fig5_confounds.png"), "groups": groups}


def curves_figure(
    strips: Sequence[Strip],
    began: dict[str, tuple[list[int], list[float]]],
    out_dir: Path,
) -> str:
    """Fig. 6: C_a(z_t) and ||z_t - z_0|| per strip; the BEGAN's M_global and k_t per step."""
    fig = new_figure(16.0, 3.6)
    axes = fig.subplots(1, 4)
    for strip in strips:
        t = range(len(strip.probabilities))
        axes[0].plot(t, strip.probabilities, label=strip.label, linewidth=1)
        axes[1].plot(t, strip.distances, label=strip.label, linewidth=1)
    axes[0].set_title("C_a(z_t)", fontsize=9)
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_title("||z_t - z_0||", fontsize=9)
    for ax, key, title in (
        (axes[2], "m_global", "BEGAN M_global"),
        (axes[3], "k", "BEGAN k_t"),
    ):
        steps, values = began.get(key, ([], []))
        if values:
            ax.plot(steps, values, linewidth=1)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step")
    for ax in axes[:2]:
        ax.set_xlabel("edit step t")
        ax.legend(fontsize=6)
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(figure_to_image(fig), out_dir, "fig6_curves.png")
