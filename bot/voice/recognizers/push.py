"""``push``: WeChat's legacy ``<Recognition>`` field, free and instant when it is there."""
from __future__ import annotations

from bot.voice.recognizers.base import RecognitionError, VoiceClip


class PushRecognizer:
    name = "push"

    def recognize(self, clip: VoiceClip, deadline: float) -> str:
        if not clip.recognition:
            raise RecognitionError("no_push_recognition", "the push has no (or an empty) Recognition")
        return clip.recognition
