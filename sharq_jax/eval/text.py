"""Text sources for perplexity: Python's docs, WikiText-2 raw, any text file."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class PythonDocs:
  """Python's documentation topics (``pydoc_data.topics``), on every install.

  The text is every topic, in sorted topic order, joined by blank lines; it
  changes with the Python version, so report ``sys.version`` with results.
  """

  def read(self) -> str:
    """The concatenated topics."""
    from pydoc_data import topics  # pylint: disable=import-outside-toplevel
    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


@dataclasses.dataclass(frozen=True)
class WikiText2Raw:
  """A raw WikiText-2 file (e.g. ``wiki.test.raw``), as HF ``wikitext-2-raw-v1``.

  Each line keeps its trailing newline, a whitespace-only line becomes "", and
  the rows are joined by "\\n\\n" (the GPTQ-style evaluation text, DESIGN §5).
  """

  path: str

  def rows(self) -> list[str]:
    """The dataset rows, one per line of the file."""
    _check_file(self.path)
    with open(self.path, encoding="utf-8") as f:
      return [row if row.strip() else "" for row in f]

  def read(self) -> str:
    """The rows joined by "\\n\\n"."""
    return "\n\n".join(self.rows())


@dataclasses.dataclass(frozen=True)
class TextFile:
  """Any UTF-8 text file, read as is."""

  path: str

  def read(self) -> str:
    """The file's text."""
    _check_file(self.path)
    with open(self.path, encoding="utf-8") as f:
      return f.read()


def _check_file(path: str) -> None:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"text file not found: {path}")


TextSource = PythonDocs | WikiText2Raw | TextFile
