"""handlers.story: the built-in demo of an answer streamed as it is written (README, "Delivery")."""
from __future__ import annotations

from bot.core.stream import StreamedText
from bot.core.webhook import Webhook
from bot.testing import BotClient, test_config
from handlers import story


def test_the_story_streams_its_sentences_in_order() -> None:
    published: list[str] = []
    text = StreamedText(story.tell(seconds_per_sentence=0)).read(published.append)
    assert text == "".join(story.STORY)
    assert published == ["".join(story.STORY[:i + 1]) for i in range(len(story.STORY))]  # a sentence at a time


def test_the_story_answers_its_keyword_in_full_without_delivery(monkeypatch) -> None:
    monkeypatch.setattr(story, "SECONDS_PER_SENTENCE", 0.0)
    monkeypatch.setattr(story.tell, "__defaults__", (0.0,))
    client = BotClient(Webhook(test_config(handlers={"routers": ["handlers.story:router"]})))
    assert client.text("讲个故事").content == "".join(story.STORY)
