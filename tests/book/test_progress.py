"""The runner's progress lines from a chapter's side file of tqdm bars (pullback_utils.book.progress)."""

from __future__ import annotations

import io

from pullback_utils.book import kernel_bars, progress


def _bar_lines(tmp_path, total: int, desc: str) -> list[str]:
    """What the kernel side writes for one bar of ``total`` steps (refreshing on every step)."""
    kernel_bars_file = tmp_path / kernel_bars.PROGRESS_FILE
    sink = kernel_bars._Lines(str(kernel_bars_file))
    import tqdm.std

    for _ in tqdm.std.tqdm(range(total), desc=desc, file=sink, mininterval=0, ascii=True, ncols=80):
        pass
    return kernel_bars_file.read_text().splitlines()


def test_a_bar_is_shown_when_it_starts_and_once_when_it_ends(tmp_path):
    lines = _bar_lines(tmp_path, 5, "bases")
    assert all(ln.startswith("bar ") for ln in lines) and len(lines) >= 6  # 0%, 1..5, the close refresh
    said: list[str] = []
    watch = progress.ChapterWatch("ch", tmp_path / kernel_bars.PROGRESS_FILE, said.append, bar_every=1e9)
    watch._tail(final=True)
    shown = [s.split("] ", 1)[1] for s in said]
    assert len(shown) == 2, said  # the start and the end, not every refresh, not the end twice
    assert shown[0].startswith("bases:   0%|") and shown[1].startswith("bases: 100%|") and "5/5" in shown[1]
    assert said[0].startswith("  [ch 0:00] ")
    # a second bar with the same label starts and ends again
    _bar_lines(tmp_path, 3, "bases")
    watch._tail(final=True)
    assert [s.split("] ", 1)[1][:12] for s in said[2:]] == ["bases:   0%|", "bases: 100%|"]
    assert watch.last_bar.startswith("bases: 100%|") and "3/3" in watch.last_bar


def test_bars_in_between_are_throttled_not_lost(tmp_path):
    _bar_lines(tmp_path, 4, "sweep")
    said: list[str] = []
    watch = progress.ChapterWatch("ch", tmp_path / kernel_bars.PROGRESS_FILE, said.append, bar_every=0.0)
    watch._tail()
    middle = [s for s in said if "%|" in s and " 0%|" not in s and "100%|" not in s]
    assert len(middle) == 3  # bar_every 0: every refresh in between is shown


def test_quiet_watch_prints_nothing_and_kernel_bars_write_text_only(tmp_path):
    lines = _bar_lines(tmp_path, 2, "x")
    assert not any("\r" in ln for ln in lines)
    out = io.StringIO()
    watch = progress.ChapterWatch("ch", tmp_path / kernel_bars.PROGRESS_FILE, lambda s: out.write(s), echo=False)
    watch._tail(final=True)
    assert out.getvalue() == "" and watch.last_bar.startswith("x: 100%|")


def test_format_seconds():
    assert [progress.format_seconds(s) for s in (0, 73, 3725)] == ["0:00", "1:13", "1:02:05"]
