"""The demo's HTML: escaped text, evidence spans as <mark> with opacity by weight."""

from __future__ import annotations

from pathlib import Path

from cera_rag.experiments.demo import DemoAnswer, DemoPassage, demo_questions, highlight_html, render_html, write_html


def test_highlight_escapes_and_marks_spans() -> None:
    text = "Pain <b>fell</b> & p<0.01"
    spans = [
        {"start": 0, "end": 4, "text": "Pain", "weight": 1.0},
        {"start": 19, "end": 25, "text": "p<0.01", "weight": 0.25},
        {"start": 2, "end": 6, "text": "in <", "weight": 0.5},  # overlaps the first: clipped
        {"start": 50, "end": 60, "text": "", "weight": 1.0},  # outside the text: ignored
    ]
    out = highlight_html(text, spans)
    assert "<b>" not in out and "b&gt;fell&lt;/b&gt; &amp; " in out
    assert out.count("<mark") == 3
    assert 'rgba(255, 191, 0, 1.00)">Pain</mark>' in out
    assert ">p&lt;0.01</mark>" in out and "rgba(255, 191, 0, 0.51)" in out
    assert ">in&lt;</mark>" not in out and "> &lt;</mark>" in out  # only the part after "Pain"


def test_render_html_page(tmp_path: Path) -> None:
    answers = [
        DemoAnswer(
            question="Did <aspirin> lower pain?",
            answer="Yes & significantly.",
            passages=[
                DemoPassage("PMC1:0-10", "Pain fell.", 0.9, [{"start": 0, "end": 4, "text": "Pain", "weight": 1}])
            ],
            reference_label="significantly decreased",
        )
    ]
    path = write_html(tmp_path / "demo.html", answers, "checkpoints/cera-quick", "SmolLM2")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and render_html(answers, "checkpoints/cera-quick", "SmolLM2") == page
    assert "Did &lt;aspirin&gt; lower pain?" in page and "Yes &amp; significantly." in page
    assert '<mark class="cera-span"' in page and "score 0.900" in page


def test_demo_questions_pick_articles_then_one_question_per_article() -> None:
    from types import SimpleNamespace

    exs = [SimpleNamespace(prompt=SimpleNamespace(article_id=a), positives=[0]) for a in ["A", "A", "B", "C", "D"]]
    split = SimpleNamespace(examples=exs)
    articles, chosen = demo_questions(split, n_articles=2, n_questions=3)
    assert articles == ["A", "B"]
    assert [c.prompt.article_id for c in chosen] == ["A", "B", "A"] and len({id(c) for c in chosen}) == 3
