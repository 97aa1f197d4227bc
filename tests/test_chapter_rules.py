"""Timestep discrepancy's lag design is checked before any basis is computed."""

from __future__ import annotations

import pytest

from pullback_utils.chapters import chapter


def _setup(tmp_path, **p):
    base = {
        "times": [0.9, 0.5, 0.1],
        "ablation_times": [0.9, 0.1],
        "ddim_steps": 20,
        "anchor_time": 0.5,
        "output_dir": str(tmp_path),
        "cache_dir": "",
    }
    return chapter.setup("timestep_discrepancy", {**base, **p})


def test_lags_start_at_the_sampler_step_and_stay_in_range(tmp_path):
    ch = _setup(tmp_path, lags=[0.2, 0.05, 0.1])
    assert ch.params["lags"] == [0.05, 0.1, 0.2]
    with pytest.raises(
        chapter.ParameterValueError, match=r"lags must start at the sampler's own step 1/ddim_steps = 0.05"
    ):
        _setup(tmp_path, lags=[0.1, 0.2])
    with pytest.raises(chapter.ParameterValueError, match=r"anchor_time \+ lag must lie in \(0, 1\]; lags \[0.6\]"):
        _setup(tmp_path, lags=[0.05, 0.6])
    with pytest.raises(chapter.ParameterValueError, match="lags must be a non-empty list"):
        _setup(tmp_path, lags=[])


@pytest.mark.parametrize("name", ["coarse_to_fine", "editing"])
def test_edit_settings_are_checked_before_any_model_loads(tmp_path, name):
    """Each chapter takes the edit settings it applies and refuses, by name, the ones that would do nothing
    there, unknown ones and invalid values (chapter.setup runs before the model is loaded)."""
    base = {"output_dir": str(tmp_path), "cache_dir": ""}
    if name == "coarse_to_fine":
        base.update(times=[0.7, 0.3], edit_times=[0.7, 0.3])
    ch = chapter.setup(name, {**base, "edit_settings": {"n_steps": 2, "gamma": 0.5}})
    assert ch.edit_settings == {"n_steps": 2, "gamma": 0.5}
    applied = chapter.EDIT_SETTINGS_APPLIED[name]
    with pytest.raises(chapter.ParameterValueError, match=rf"edit_settings: {name} applies only .*\['inversion'\]"):
        chapter.setup(name, {**base, "edit_settings": {"inversion": 3}})
    with pytest.raises(chapter.ParameterValueError, match="edit_settings: .*n_steps"):
        chapter.setup(name, {**base, "edit_settings": {"n_steps": -1}})
    with pytest.raises(chapter.ParameterValueError, match="edit_settings must be a mapping"):
        chapter.setup(name, {**base, "edit_settings": [("n_steps", 2)]})
    if "inversion_steps" not in applied:  # coarse_to_fine finishes its edits with its own ddim_steps
        with pytest.raises(chapter.ParameterValueError, match=r"applies only \['gamma', 'n_steps'\].*inversion_steps"):
            chapter.setup(name, {**base, "edit_settings": {"inversion_steps": 10}})
    else:
        assert chapter.setup(name, {**base, "edit_settings": {"inversion_steps": 10}}).edit_settings
    with pytest.raises(chapter.ParameterValueError, match=r"got \['k'\]"):  # the chapter's own k sets it
        chapter.setup(name, {**base, "edit_settings": {"k": 2}})


def test_the_prompt_chapters_control_needs_two_states_among_its_own(tmp_path):
    """The rehearsal of paper.yaml ran 28 minutes with n_control = 1 and failed at the control's fading test
    (one prompt-state: no test); n_control above n_states silently ran fewer control states."""
    base = {"output_dir": str(tmp_path), "cache_dir": "", "n_states": 3, "times": [1.0, 0.1]}
    assert chapter.setup("prompt_influence", {**base, "n_control": 3}).n_control == 3
    with pytest.raises(chapter.ParameterValueError, match="n_control must be an int >= 2, got 1"):
        chapter.setup("prompt_influence", {**base, "n_control": 1})
    with pytest.raises(chapter.ParameterValueError, match="n_control must be at most n_states=3"):
        chapter.setup("prompt_influence", {**base, "n_control": 4})


def test_prompt_study_refuses_a_control_it_cannot_test_before_sampling():
    from pullback_utils.chapters.measurements import prompt_study

    class Text:  # conditional; sampling would fail loudly, so reaching it means the check did not run
        is_conditional = True

        def conditioning(self, prompt):
            return prompt

    kw = dict(seed=0, times=[1.0, 0.1], k=2, ddim_steps=4)
    with pytest.raises(ValueError, match="n_control must be an int >= 2, got 1"):
        prompt_study(Text(), list("abcd"), n_states=2, n_control=1, **kw)
    with pytest.raises(ValueError, match="n_control must be at most n_states=2"):
        prompt_study(Text(), list("abcd"), n_states=2, n_control=3, **kw)


def test_the_sensitivity_rows_need_as_many_samples_as_the_chapters_tests(tmp_path):
    """The rehearsal of paper.yaml ran timestep_discrepancy 8 minutes with sensitivity_samples = 2 and failed in
    the sensitivity cell: its rows repeat the jackknife test over sample pairs (4 units at least) on the first
    sensitivity_samples samples."""
    base = {"output_dir": str(tmp_path), "cache_dir": "", "n_samples": 4}
    td = {**base, "times": [0.7, 0.5, 0.3], "ablation_times": [0.7, 0.3], "control_times": [0.7, 0.3]}
    assert chapter.setup("timestep_discrepancy", {**td, "sensitivity_samples": 4}).sensitivity_samples == 4
    with pytest.raises(chapter.ParameterValueError, match=r"sensitivity_samples must be >= 4 for timestep_discrepancy"):
        chapter.check_values("timestep_discrepancy", {**td, "sensitivity_samples": 3})
    # coarse_to_fine's sign-flip test runs on 2; below that the generic rule refuses
    c2f = {**base, "times": [0.7, 0.3], "edit_times": [0.7, 0.3], "control_times": [0.7, 0.3]}
    assert chapter.check_values("coarse_to_fine", {**c2f, "sensitivity_samples": 2})["sensitivity_samples"] == 2
    with pytest.raises(chapter.ParameterValueError, match="sensitivity_samples must be an int >= 2, got 1"):
        chapter.check_values("coarse_to_fine", {**c2f, "sensitivity_samples": 1})
    with pytest.raises(chapter.ParameterValueError, match="sensitivity_tol must be"):
        chapter.check_values("coarse_to_fine", {**c2f, "sensitivity_tol": 0.0})


def test_a_sensitivity_layer_the_model_lacks_is_refused_by_name_before_any_basis(tmp_path):
    import pullback_utils as pu

    m = pu.load_model("disks")
    ch = chapter.setup("coarse_to_fine", {"output_dir": str(tmp_path), "cache_dir": "", "sensitivity_layer": "up.1"})
    ch.check_layers(m)  # a block of the model: accepted
    ch = chapter.setup("coarse_to_fine", {"output_dir": str(tmp_path), "cache_dir": "", "sensitivity_layer": "up.99"})
    with pytest.raises(chapter.ParameterValueError, match=r"coarse_to_fine: sensitivity_layer: unknown layer 'up.99'"):
        ch.check_layers(m)


def _check(name, **p):
    return chapter.check_values(name, p)


C2F = dict(model="disks", n_samples=4, times=[0.9, 0.5, 0.1], edit_times=[0.9, 0.1])
TD = dict(n_samples=4, times=[0.9, 0.55, 0.5, 0.1], ablation_times=[0.9, 0.1], anchor_time=0.5, ddim_steps=20)


@pytest.mark.parametrize(
    "name, params, match",
    [
        # each value passed every check before and failed after the chapter's bases (a static audit of 2026-12-08)
        ("dataset_complexity", dict(n_samples=3), "n_samples must be >= 4 for dataset_complexity"),
        ("dataset_complexity", dict(control_samples=1), "control_samples must be an int >= 2, got 1"),
        ("dataset_complexity", dict(rungs=[1]), "rungs must hold at least 2 distinct rungs"),
        ("dataset_complexity", dict(rungs=[1, 1]), "rungs must hold at least 2 distinct rungs"),
        ("dataset_complexity", dict(rungs=[]), "rungs must hold at least 2 distinct rungs"),
        ("dataset_complexity", dict(rungs=[1, 9]), r"rungs\[1\]: unknown ladder rung 9"),
        ("dataset_complexity", dict(n_twonn=2), "n_twonn must be an int >= 3, got 2"),
        ("dataset_complexity", dict(illustration=["disk"]), r"illustration: \['disk'\] not a zoo model"),
        ("dataset_complexity", dict(illustration=["ladder-1-s0"]), "whose dataset has the same name"),
        ("coarse_to_fine", dict(C2F, control_times=[0.9]), "control_times must be a list of at least 2"),
        ("coarse_to_fine", dict(C2F, gaussian_rank=64, share_k=128), "share_k must be at most gaussian_rank=64"),
        # without t_next = anchor + 1/ddim_steps among times the control's trend would have 1 time
        ("timestep_discrepancy", dict(TD, times=[0.9, 0.5, 0.1], control_times=[0.5]), r"needs 2, got \[0.5\]"),
        ("timestep_discrepancy", dict(TD, control_times=[0.9], anchor_time=0.3, lags=[0.05]), "needs 2, got"),
        ("editing", dict(model="disks", dose_gammas=[1.0], dose_steps=[4]), "at least 2 distinct doses"),
        ("editing", dict(dose_gammas=[0.0, 1.0], dose_steps=[4]), r"dose_gammas\[0\] must be > 0"),
        ("editing", dict(dose_steps=[]), "dose_steps must be a non-empty list of ints >= 1"),
        ("editing", dict(text_model="shapes_text"), r"did you mean 'shapes-text'.*or '' to skip the prompt section"),
        ("editing", dict(text_model="shapes-text", prompt_pair=["a red circle"]), "prompt_pair must be two non-empty"),
    ],
)
def test_values_that_would_fail_after_the_bases_are_refused_by_name(name, params, match):
    with pytest.raises(chapter.ParameterValueError, match=match):
        _check(name, **params)


def test_the_values_next_to_the_refused_ones_pass():
    assert _check("dataset_complexity", n_samples=4, control_samples=2, rungs=[2, 1], n_twonn=3)["rungs"] == [2, 1]
    assert _check("dataset_complexity", rungs=[1, 2, 2])["rungs"] == [1, 2]  # the chapter drops repeats too
    assert _check("dataset_complexity", illustration=[])["illustration"] == []
    assert _check("coarse_to_fine", **C2F, control_times=[0.9, 0.1], gaussian_rank=128, share_k=128)
    # the anchor and one step later are among times: with control_times [0.9] the control's trend has 3 times
    assert _check("timestep_discrepancy", **TD, control_times=[0.9], lags=[0.05])
    assert _check("editing", dose_gammas=[1.0, 2.0], dose_steps=[4], text_model="shapes-text", prompt_pair=["a", "b"])
    # what a chapter skips is not refused: the prompt section without text_model, the Gaussian control and the
    # dose grid for a model outside the zoo (no training data, no renderer)
    assert _check("editing", text_model="", prompt_pair=[])
    folder = {"model": "stabilityai/stable-diffusion-2-1-base"}
    assert _check("editing", **folder, dose_gammas=[1.0], dose_steps=[4])
    assert _check("coarse_to_fine", **{**C2F, **folder}, gaussian_rank=64, share_k=128)


def test_the_claims_a_chapter_records_per_model_are_the_ones_its_notebook_records():
    """minimum_units counts the tests of claims a chapter records as "<id>@<model>": the table must match the
    notebooks (an oracle read from their sources)."""
    import re
    from pathlib import Path

    from pullback_utils.claims.registry import CLAIMS, PER_MODEL_RECORDS

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    own = {c.id for c in CLAIMS}
    for nb in sorted(notebooks.glob("*.md")):
        ids = set(re.findall(r'ch\.claim\(f"([a-z_]+)@\{', nb.read_text()))
        foreign = {i for i in ids if i in own and next(c for c in CLAIMS if c.id == i).chapter != nb.stem}
        assert foreign == set(PER_MODEL_RECORDS.get(nb.stem, ())), nb.stem


def test_prompts_whose_attribute_similarity_is_constant_are_refused():
    one_attribute = [f"a {c} circle" for c in ("red", "blue", "green", "yellow", "white")]
    with pytest.raises(chapter.ParameterValueError, match="similarity the claim is tested against is constant"):
        _check("prompt_influence", prompts=one_attribute, similarity="attributes")
    assert _check("prompt_influence", prompts=one_attribute, similarity="sentence")  # MiniLM's cosine varies
    two = [f"a {c} circle {p}" for c in ("red", "blue", "green") for p in ("on the left", "on the right")]
    assert _check("prompt_influence", prompts=two, similarity="attributes")
    with pytest.raises(chapter.ParameterValueError, match=r"prompts\[1\] \('a dog on a bench'\)"):
        _check("prompt_influence", prompts=[two[0], "a dog on a bench"], similarity="attributes")
    with pytest.raises(chapter.ParameterValueError, match="similarity must be one of"):
        _check("prompt_influence", prompts=two, similarity="cosine")


def test_every_notebook_with_a_layer_parameter_checks_it_after_loading_its_model():
    import re
    from pathlib import Path

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    for nb in sorted(notebooks.glob("*.md")):
        text = nb.read_text()
        for key in chapter.LAYER_PARAMETERS:
            if re.search(rf"^{key}\s*:", text, re.M):
                load = text.index("pu.load_model(ch.model)")
                assert 0 <= text.find("ch.check_layers(m)") - load < 80, nb.stem  # the next line


@pytest.mark.parametrize("params_file", ["quick.yaml", "paper.yaml", "rehearsal"])
def test_the_shipped_parameter_files_pass_every_value_rule(params_file, monkeypatch):
    """Names and types of the files are checked elsewhere; a rule that refused a shipped value would be found
    only by running the file (the paper's, hours on a GPU)."""
    import importlib.util
    import re
    from pathlib import Path

    import yaml

    from pullback_utils.chapters.parameters import parse_parameters

    root = Path(__file__).resolve().parents[1]
    if params_file == "rehearsal":
        spec = importlib.util.spec_from_file_location("paper_rehearsal", root / "benchmarks" / "paper_rehearsal.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        paper = yaml.safe_load((root / "book" / "params" / "paper.yaml").read_text())
        sections = {n: {**paper.get(n, {}), **v} for n, v in mod.REDUCED.items()}
    else:
        sections = yaml.safe_load((root / "book" / "params" / params_file).read_text())
    checked = 0
    for name, values in sections.items():
        nb = root / "notebooks" / f"{name}.md"
        if not isinstance(values, dict) or not nb.is_file():
            continue
        cell = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[parameters[^\n]*\n(.*?)```", nb.read_text(), re.S)
        defaults = {k: v.default for k, v in parse_parameters(cell.group(1)).items() if v.literal}
        chapter.check_values(name, {**defaults, **values})
        checked += 1
    assert checked >= 5
