"""What every chapter does first and last: ``chapter`` (set-up, metrics), ``parameters`` (the papermill
parameters cell), ``measurements`` (what chapters measure), ``figures`` (captioned figures),
``plotting`` (the book's style), ``units`` (the units behind a claim), ``tables``, ``scorecard`` (the claims'
verdicts over all chapters).
"""

from pullback_utils._lazy import submodules

# The public API, grouped by module (each group: the module's job). Names load on first use (PEP 562),
# so importing the package imports none of its modules; ``__all__`` is this table flattened.
_EXPORTS = {
    # chapter: chapter set-up, parameter rules, metrics
    "chapter": [
        "Chapter",
        "setup",
        "check_values",
        "RULES",
        "CHAPTER_RULES",
        "ParameterValueError",
    ],
    # parameters: the papermill parameters cell
    "parameters": [
        "ParameterError",
        "Parameter",
        "parse_parameters",
        "parse_assignments",
        "validate_overrides",
        "check_parameters",
        "BOOK_ENV",
        "in_book_run",
    ],
    # measurements: what chapters measure
    "measurements": [
        "TangentStudy",
        "tangent_study",
        "noise_floor_sweep",
        "crossed_bases",
        "edits_at_matched_size",
        "PromptStudy",
        "prompt_study",
        "prompt_distances",
        "ModelSweep",
        "model_sweeps",
        "ladder_plan",
        "inversion_round_trip",
        "model_dataset",
        "guided_vs_naive",
        "variant_sweep",
    ],
    # figures: figures with captions
    "figures": [
        "over_t",
        "psd_curves",
        "distances_over_t",
        "self_distance_heatmap",
        "ablation_bars",
        "mean_ci",
        "similarity_scatter",
        "ladder_figure",
        "truth_energy_over_t",
        "truth_directions",
        "discrepancy_over_lags",
    ],
    # plotting: the book's plotting style
    "plotting": [
        "show_strip",
        "show_grid",
        "book_style",
        "save_figure",
        "check_figure",
        "time_axis",
        "SavedFigure",
        "CONTENT_WIDTH_PX",
        "FIGURE_DPI",
        "FIGURE_WIDTH_IN",
        "MIN_FONT_PT",
        "MANIFEST",
    ],
    # tables: tables
    "tables": [
        "markdown_table",
    ],
    # scorecard: the scorecard
    "scorecard": [
        "NOT_MEASURED",
        "ScoreRow",
        "collect",
        "primary_rows",
        "verdict_counts",
        "to_markdown",
        "describe",
        "summary_figure",
        "model_matrix",
        "model_matrix_figure",
        "scorecard_records",
        "stability_marks",
        "sensitivity_table",
    ],
}
__all__ = [name for names in _EXPORTS.values() for name in names]

__getattr__, __dir__ = submodules(__name__, _EXPORTS)
