"""PTB tokenisation exactly as ``pycocoevalcap.tokenizer.ptbtokenizer.PTBTokenizer`` does it.

Same jar (Stanford CoreNLP 3.4.1 shipped inside pycocoevalcap), same flags
(``-preserveLines -lowerCase``), same punctuation filter, one sentence per line. Differences,
all of which only make the wrapper robust without changing any token:

- one flat list of sentences in, one list out, in order (no dict keyed by image id);
- the temporary file goes to the system temp dir, not into site-packages (read-only on many
  workers);
- besides ``\\n`` (which pycocoevalcap already replaces), the other characters the tokenizer
  treats as line breaks (``\\r``, ``\\x0b``, ``\\x0c``, U+2028, U+2029) are replaced by spaces.
  pycocoevalcap passes them through, the jar then emits extra lines and every later caption
  gets the wrong tokens; here they separate tokens like the line break they stand for;
- the output line count is checked.

Lines are tokenised independently, so tokenising a corpus block by block gives the same tokens
as tokenising it whole (tested).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from mmbatch.core.metric import MetricError
from mmbatch.core.requirements import EXECUTABLE_HINTS

_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\u2028\u2029"})


def _jar_and_punctuation() -> tuple[str, list[str]]:
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar = os.path.join(os.path.dirname(os.path.abspath(ptbtokenizer.__file__)),
                       ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR)
    return jar, list(ptbtokenizer.PUNCTUATIONS)


def ptb_tokenize(sentences: list[str]) -> list[str]:
    """Lower-cased PTB tokens of each sentence, space-joined, punctuation tokens removed."""
    if not sentences:
        return []
    java = shutil.which("java")
    if java is None:
        raise MetricError("'java' not found on PATH. " + EXECUTABLE_HINTS["java"])
    jar, punctuation = _jar_and_punctuation()
    text = "\n".join(s.translate(_LINE_BREAKS) for s in sentences)
    fd, path = tempfile.mkstemp(prefix="mmbatch-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode())
        cmd = [java, "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", path]
        proc = subprocess.run(cmd, capture_output=True, check=False)
    finally:
        os.remove(path)
    if proc.returncode != 0:
        raise MetricError(f"PTBTokenizer failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    lines = proc.stdout.decode().split("\n")
    # a trailing newline in the output yields one extra empty element, as in pycocoevalcap (zip)
    if len(lines) < len(sentences) or any(lines[len(sentences):]):
        raise MetricError(
            f"PTBTokenizer returned {len(lines)} lines for {len(sentences)} sentences; "
            "the output cannot be aligned with the input"
        )
    drop = set(punctuation)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in drop) for line in lines[: len(sentences)]]
