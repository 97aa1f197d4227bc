"""EditConfig: the per-model defaults, validation on construction, replace/to_dict (pullback_utils.editing.config)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from pullback_utils import editing as E
from pullback_utils.editing import EditConfig


def test_edit_defaults_in_one_place(pixel, text):
    assert E.edit_defaults("disks") == E.EDIT_DEFAULTS["zoo-pixel"].to_dict()
    assert E.edit_defaults("shapes-text")["n_steps_prompt"] == E.EDIT_DEFAULTS["zoo-text"].n_steps_prompt == 16
    assert E.edit_defaults("google/ddpm-ema-celebahq-256")["gamma"] == 0.1
    assert E.edit_defaults("stabilityai/stable-diffusion-2-1-base")["n_steps_prompt"] == 64
    assert E.edit_defaults(pixel)["k"] == E.EDIT_DEFAULTS["zoo-pixel"].k
    assert E.edit_defaults(text) == E.EDIT_DEFAULTS["zoo-text"].to_dict()
    d = E.edit_defaults("disks")
    d["gamma"] = -1
    assert E.EDIT_DEFAULTS["disks"].gamma != -1  # a copy


def test_the_table_keeps_todays_values():
    """The values of the former EDIT_DEFAULTS dict, entry by entry (official ones from Park et al.'s code)."""
    want = {
        "zoo-pixel": (1.0, 8, 8, 1.0, (0.8, 0.6, 0.4), 3, 50, 20, None),
        "zoo-text": (1.0, 8, 16, 1.0, (0.8, 0.6, 0.4), 3, 50, 20, None),
        "celebahq": (0.1, 16, 16, 1.0, (1.0, 0.8, 0.6), 2, 100, 100, 0.2),
        "stable-diffusion": (1.0, 16, 64, 1.0, (0.7, 0.6), 2, 100, 100, None),
    }
    names = (
        "gamma",
        "n_steps",
        "n_steps_prompt",
        "step_size",
        "t_edits",
        "k",
        "inversion_steps",
        "sampling_steps",
        "eta_below",
    )
    for key, values in want.items():
        cfg = E.EDIT_DEFAULTS[key]
        assert tuple(getattr(cfg, n) for n in names) == values, key
        assert cfg.guidance_prompt == "generation" and cfg.source
    for alias, key in (
        ("disks", "zoo-pixel"),
        ("shapes", "zoo-pixel"),
        ("scenes", "zoo-pixel"),
        ("textures", "zoo-pixel"),
        ("shapes-text", "zoo-text"),
    ):
        assert E.EDIT_DEFAULTS[alias] == E.EDIT_DEFAULTS[key]


def test_for_model_lookup_rules(pixel, text):
    assert EditConfig.for_model("/some/where/shapes/") == E.EDIT_DEFAULTS["shapes"]  # last path component
    assert EditConfig.for_model("my-ddpm-ema-thing") == E.EDIT_DEFAULTS["celebahq"]
    assert EditConfig.for_model("unknown") == E.EDIT_DEFAULTS["zoo-pixel"]
    assert EditConfig.for_model(pixel) == E.EDIT_DEFAULTS["zoo-pixel"]
    assert EditConfig.for_model(text) == E.EDIT_DEFAULTS["zoo-text"]  # a pixel-space text model


def test_the_table_is_read_only_and_configs_are_frozen():
    with pytest.raises(TypeError):
        E.EDIT_DEFAULTS["disks"] = EditConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        E.EDIT_DEFAULTS["disks"].gamma = 2.0


def test_replace_validates_and_copies():
    base = EditConfig.for_model("disks")
    c = base.replace(gamma=0.5, t_edits=[0.9, 0.5], eta_below=0.3, guidance_prompt="edit")
    assert c.gamma == 0.5 and c.t_edits == (0.9, 0.5) and c.eta_below == 0.3 and c.guidance_prompt == "edit"
    assert base.gamma == 1.0 and base.guidance_prompt == "generation"
    d = c.to_dict()
    assert list(d) == list(EditConfig.fields()) and d["gamma"] == 0.5
    assert EditConfig(**d) == c  # the dict is a full description
    json.dumps(d)  # metadata-ready
    with pytest.raises(TypeError, match=r"unknown EditConfig field\(s\) \['gama'\]; valid fields: \['gamma'"):
        base.replace(gama=1.0)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(gamma=math.nan), r"gamma must be a finite number, got nan"),
        (dict(gamma="1"), r"gamma must be a finite number"),
        (dict(n_steps=-1), r"n_steps must be an int >= 0, got -1"),
        (dict(n_steps=2.0), r"n_steps must be an int >= 0"),
        (dict(n_steps_prompt=True), r"n_steps_prompt must be an int >= 0"),
        (dict(step_size=0.0), r"step_size must be > 0"),
        (dict(k=0), r"k must be an int >= 1"),
        (dict(inversion_steps=0), r"inversion_steps must be an int >= 1"),
        (dict(sampling_steps=None), r"sampling_steps must be an int >= 1"),
        (dict(eta_below=5), r"eta_below must be a fraction of T in \[0, 1\] or None, got 5"),
        (dict(eta_below=-0.1), r"eta_below must be a fraction of T in \[0, 1\] or None"),
        (dict(eta_below=math.nan), r"eta_below must be a fraction of T in \[0, 1\] or None"),
        (dict(t_edits=()), r"t_edits must be a non-empty sequence of edit times"),
        (dict(t_edits=(0.5, 0.0)), r"t_edits must be a non-empty sequence"),
        (dict(t_edits=(1.5,)), r"t_edits must be a non-empty sequence"),
        (dict(t_edits="0.5"), r"t_edits must be a non-empty sequence"),
        (dict(guidance_prompt="basis"), r"guidance_prompt must be one of \['generation', 'edit'\], got 'basis'"),
        (dict(source=3), r"source must be a string"),
    ],
)
def test_bad_settings_are_refused_on_construction(change, match):
    with pytest.raises(ValueError, match=match):
        EditConfig.for_model("disks").replace(**change)
    with pytest.raises(ValueError, match=match):
        EditConfig(**change)


def test_bad_settings_fail_before_any_compute(no_compute):
    """Issue 13 item 10: eta_below=5 used to be refused only in the finish, after inversion, basis and guidance."""
    with pytest.raises(ValueError, match=r"eta_below must be a fraction of T in \[0, 1\] or None, got 5"):
        E.edit_image(no_compute, None, t_edit=0.6, eta_below=5)
    with pytest.raises(ValueError, match=r"eta_below must be a fraction of T in \[0, 1\] or None"):
        E.edit_image(no_compute, None, config=EditConfig(), t_edit=0.6, eta_below=1.5)
    with pytest.raises(TypeError, match=r"unknown EditConfig field\(s\) \['gama'\]"):
        E.edit_image(no_compute, None, t_edit=0.6, gama=1.0)
    with pytest.raises(TypeError, match="config must be an EditConfig"):
        E.edit_image(no_compute, None, t_edit=0.6, config={"gamma": 1.0})
    with pytest.raises(ValueError, match="eta_below must be a fraction of T in \\[0, 1\\], None or 'default'"):
        E.edit_image(no_compute, None, t_edit=0.6, eta_below="auto")


def test_for_model_applies_overrides_and_names_the_parameter_on_bad_ones():
    base = EditConfig.for_model("google/ddpm-ema-celebahq-256")
    got = EditConfig.for_model("google/ddpm-ema-celebahq-256", {"inversion_steps": 10, "n_steps": 2})
    assert (got.inversion_steps, got.n_steps) == (10, 2)
    assert got.replace(source=base.source) == base.replace(inversion_steps=10, n_steps=2)  # nothing else moved
    assert "edit_settings" not in got.source and "inversion_steps" in got.source  # the source records the change
    assert EditConfig.for_model("disks", {}) == EditConfig.for_model("disks") == E.EDIT_DEFAULTS["zoo-pixel"]
    assert E.edit_defaults("disks", {"gamma": 0.5})["gamma"] == 0.5
    with pytest.raises(ValueError, match=r"edit_settings: unknown edit setting\(s\) \['inversion'\]; valid fields"):
        EditConfig.for_model("disks", {"inversion": 10}, parameter="edit_settings")
    with pytest.raises(ValueError, match="edit_settings: unknown .*'source'"):
        EditConfig.for_model("disks", {"source": "mine"}, parameter="edit_settings")
    with pytest.raises(ValueError, match="edit_settings: .*inversion_steps"):
        EditConfig.for_model("disks", {"inversion_steps": 0}, parameter="edit_settings")
    with pytest.raises(ValueError, match="edit_settings must be a mapping"):
        EditConfig.for_model("disks", [("n_steps", 2)], parameter="edit_settings")
