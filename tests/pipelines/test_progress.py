"""One readable line per step: in place in a terminal, plain lines at most every 30 s in a log."""

import io
import time

from mmbatch.pipelines.progress import Progress, step_lines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


STATS = {"steps[0] decode_image": {"rows": 2048, "errors": 5, "seconds": 1.0},
         "steps[1] embed": {"rows": 1024, "errors": 0, "seconds": 3.0}}


def test_one_line_per_step_with_rows_errors_and_rate():
    assert step_lines(STATS, 2.0) == [
        "  steps[0] decode_image: 2,048 rows, 5 errors born here, 1,024.0 rows/s",
        "  steps[1] embed: 1,024 rows, 0 errors born here, 512.0 rows/s",
    ]


def test_a_log_gets_plain_lines_every_30_s_and_a_terminal_redraws_in_place():
    log = io.StringIO()
    assert Progress(lambda: STATS, log).interval == 30.0
    with Progress(lambda: STATS, log, interval=0.05):
        time.sleep(0.2)
    text = log.getvalue()
    assert "\x1b[" not in text and text.count("progress after") >= 2 and "steps[1] embed: 1,024 rows" in text

    term = Terminal()
    assert Progress(lambda: STATS, term).interval == 1.0
    with Progress(lambda: STATS, term, interval=0.05):
        time.sleep(0.2)
    shown = term.getvalue()
    assert shown.count("\x1b[2F") >= 1  # moved up over its two lines to redraw them
    assert "progress after" not in shown


def test_a_failing_poll_never_breaks_the_run():
    def poll():
        raise TimeoutError("stats actor busy")

    log = io.StringIO()
    with Progress(poll, log, interval=0.01):
        time.sleep(0.05)
    assert log.getvalue() == ""
