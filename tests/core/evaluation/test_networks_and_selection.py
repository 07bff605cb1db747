"""A corpus of networks, not files; cuts and the served candidate chosen on held-out
networks only; the gate against the flow-only baseline."""

import shutil

import numpy as np
import polars as pl
import pytest

from nids_core.evaluation.cuts import CANDIDATE_CUTS, best_cut, macro_f1_at
from nids_core.evaluation.gate import MAX_WORST_SHORTFALL, lono_rule
from nids_core.evaluation.lono import FoldScores, LonoResult
from nids_core.model.candidates import SERVABLE
from nids_core.training_data.data_dir import labelled_folders
from nids_core.training_data.networks import NetworkManifestError, parse_manifest
from nids_core.training_data.reference_corpus import list_reference_files, read_corpus
from tests.support.deployment import data_dir, iot23


def test_the_data_directory_is_ten_networks_of_three_kinds_and_uwf_is_one():
    folders = labelled_folders(data_dir())
    if len(folders) < 3:
        pytest.skip("the data directory lacks Botnet-4 or UWF-ZeekData22")
    flows, summaries = read_corpus([str(f) for f in folders])
    kinds = dict(flows.group_by("capture").agg(pl.col("network_kind").first()).iter_rows())
    assert len(summaries) == 11 and len(kinds) == 10
    assert kinds["uwf-zeekdata22"] == "cyber-range"
    assert kinds["CTU-Malware-Capture-Botnet-4"] == "windows-host"
    assert {k for n, k in kinds.items() if n.startswith("CTU-") and "Botnet" not in n} == {
        "iot-home"
    }
    uwf = flows.filter(pl.col("capture") == "uwf-zeekdata22")
    assert uwf.height == 10_477 + 8_211
    assert sum(s.repeated for s in summaries) == 13 + 2_049


def test_a_networks_manifest_makes_several_files_one_network_and_a_bad_one_says_why(tmp_path):
    site = tmp_path / "office"
    site.mkdir()
    for name in (
        "CTU-Malware-Capture-20-1-labeled.csv.gz",
        "CTU-Malware-Capture-21-1-labeled.csv.gz",
    ):
        shutil.copy(iot23(name), site / name)
    shutil.copy(iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz"), site)
    (site / "networks.toml").write_text(
        '[networks.hq]\nkind = "office"\n'
        'captures = ["CTU-Malware-Capture-20-1", "CTU-Malware-Capture-21-1"]\n'
    )
    files = {f.capture: f.network for f in list_reference_files([str(site)])}
    assert files["CTU-Malware-Capture-20-1"].name == "hq"
    assert files["CTU-Malware-Capture-21-1"].kind == "office"
    # Not in the manifest: its own network, of the kind its folder names.
    assert files["CTU-Honeypot-Capture-7-1"].name == "CTU-Honeypot-Capture-7-1"
    assert files["CTU-Honeypot-Capture-7-1"].kind == "office"
    flows, _ = read_corpus([str(site)])
    assert dict(flows.group_by("capture").len().iter_rows()) == {
        "hq": 3_209 + 3_286,
        "CTU-Honeypot-Capture-7-1": 130,
    }
    for text, why in (
        ("[networks.a]\ncaptures = []\n", "captures must list"),
        (
            '[networks.a]\ncaptures = ["x"]\n[networks.b]\ncaptures = ["x"]\n',
            "is in networks a and b",
        ),
        ("networks = 3", "no [networks.NAME] table"),
        ("[networks.a\n", "not TOML"),
    ):
        with pytest.raises(NetworkManifestError, match="site/networks.toml: .*" + why.split()[0]):
            parse_manifest(text, "site/networks.toml")


def test_macro_f1_at_every_cut_is_sklearns():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    score = np.clip(0.4 * y + 0.6 * rng.random(400), 0, 1)
    expected = [f1_score(y, (score >= t).astype(int), average="macro") for t in CANDIDATE_CUTS]
    assert np.allclose(macro_f1_at(y, score), expected)
    # Every cut equally good (one class scored the same): the cut nearest 0.5.
    assert best_cut([(np.array([0, 1]), np.array([0.99, 0.99]))]) == 0.5


def _folds(rng: np.random.Generator, networks: int = 5, seeds: int = 2) -> list[FoldScores]:
    """Held-out scores of each candidate: random numbers, shifted up for attacks by an
    amount that differs per candidate and network (the arithmetic is what is tested)."""
    folds = []
    for n in range(networks):
        y = (rng.random(300) < 0.1 + 0.15 * n).astype(np.int64)
        for seed in range(seeds):
            scores = {
                c: np.clip(rng.random(300) * 0.6 + y * (0.15 + 0.1 * ((i + n) % 3)), 0, 1)
                for i, c in enumerate(SERVABLE)
            }
            folds.append(FoldScores(f"net{n}", "k" if n < 3 else "other", seed, y, scores, 3))
    return folds


def test_a_held_out_networks_labels_never_choose_its_cut_or_what_is_served_on_it():
    folds = _folds(np.random.default_rng(0))
    result = LonoResult(folds=folds).finish()
    flipped = [
        FoldScores(f.network, f.kind, f.seed, 1 - f.y if f.network == "net2" else f.y, f.scores, 3)
        for f in folds
    ]
    other = LonoResult(folds=flipped).finish()
    for seed in (0, 1):
        for c in SERVABLE:
            assert result.runs["net2"][seed][c]["cut"] == other.runs["net2"][seed][c]["cut"]
        assert result.chosen["net2"][seed] == other.chosen["net2"][seed]
        assert result.runs["net2"][seed]["served"]["macro_f1"] != pytest.approx(
            other.runs["net2"][seed]["served"]["macro_f1"]
        )
    # The cut of net2 is the best over the other networks' held-out scores of that seed.
    for c in SERVABLE:
        rest = [(f.y, f.scores[c]) for f in folds if f.network != "net2" and f.seed == 0]
        assert result.runs["net2"][0][c]["cut"] == best_cut(rest)
    # The final model: the candidate best over all held-out networks (the simplest within
    # the margin), at the cut best over all of them; the baseline is the flow trees at 0.5.
    assert result.selected in SERVABLE
    assert result.selected_cut == best_cut([(f.y, f.scores[result.selected]) for f in folds])
    assert {m["baseline"]["cut"] for by in result.runs.values() for m in by.values()} == {0.5}
    summary = result.summary("served")
    per = result.per_network("served")
    assert summary["mean"] == pytest.approx(np.mean(list(per.values())))
    assert summary["kind_mean"] == pytest.approx(
        np.mean([np.mean([per[f"net{n}"] for n in range(3)]), np.mean([per["net3"], per["net4"]])])
    )


def test_the_gate_wants_the_baselines_mean_and_its_worst_within_the_margin():
    def lono(served_mean, served_worst, base_mean, base_worst):
        fig = dict.fromkeys(("seed_sd", "kind_mean", "max_benign_fpr"), 0.0)
        return {
            "networks": ["a", "b"],
            "selected": "context_trees",
            "selected_cut": 0.3,
            "summary": {
                "served": {**fig, "mean": served_mean, "worst": served_worst},
                "baseline": {**fig, "mean": base_mean, "worst": base_worst},
            },
        }

    assert lono_rule(lono(0.90, 0.80, 0.89, 0.81)).passed
    assert not lono_rule(lono(0.88, 0.85, 0.89, 0.81)).passed  # mean below
    shortfall = lono_rule(lono(0.95, 0.81 - MAX_WORST_SHORTFALL - 0.001, 0.89, 0.81))
    assert not shortfall.passed and shortfall.value == pytest.approx(-0.001)
    detail = lono_rule(lono(0.90, 0.80, 0.89, 0.81)).detail
    assert "serving context_trees at cut 0.30" in detail and "simpler candidate" in detail
