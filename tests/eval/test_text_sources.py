"""Text sources: pydoc topics, WikiText-2 raw (HF row reproduction), text files."""

import os

import pytest

from sharq_jax.eval import text

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# shared/ sits inside or beside the checkout (CI) or at /work/shared.
WIKI_TEST = next(
    (p for p in (os.path.join(root, "shared", "data", "wikitext-2-raw", "wiki.test.raw")
                 for root in (_REPO, os.path.dirname(_REPO), "/work"))
     if os.path.isfile(p)), "")


def test_python_docs_is_every_topic_in_order():
  from pydoc_data import topics
  docs = text.PythonDocs().read()
  assert docs.startswith(topics.topics[sorted(topics.topics)[0]])
  assert topics.topics["assert"] in docs
  assert len(docs) > 100_000 and docs == text.PythonDocs().read()


def test_wikitext_rows_follow_hf(tmp_path):
  path = tmp_path / "wiki.raw"
  path.write_bytes(b" \n = Title = \n \n Body @-@ text .\n\t\n Last line .\n")
  src = text.WikiText2Raw(str(path))
  assert src.rows() == ["", " = Title = \n", "", " Body @-@ text .\n", "",
                        " Last line .\n"]
  assert src.read() == ("\n\n = Title = \n\n\n\n\n Body @-@ text .\n\n\n\n\n"
                        " Last line .\n")


@pytest.mark.skipif(not os.path.isfile(WIKI_TEST), reason="no WikiText-2 data")
def test_real_wikitext2_test_split():
  rows = text.WikiText2Raw(WIKI_TEST).rows()
  assert len(rows) == 4358  # rows of HF wikitext-2-raw-v1 "test"
  assert rows[:3] == ["", " = Robert Boulter = \n", ""]
  assert all(r == "" or r.strip() for r in rows)


def test_text_file_and_missing(tmp_path):
  path = tmp_path / "t.txt"
  path.write_text("héllo\nwörld\n", encoding="utf-8")
  assert text.TextFile(str(path)).read() == "héllo\nwörld\n"
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    text.TextFile(str(tmp_path / "nope.txt")).read()
  with pytest.raises(FileNotFoundError):
    text.WikiText2Raw(str(tmp_path / "nope.raw")).read()
