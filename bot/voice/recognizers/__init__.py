"""Recognizers turn a voice message into text: ``push``, ``wechat``, ``openai``, or your own."""
from bot.voice.recognizers.base import RecognitionError, Recognizer, VoiceClip
from bot.voice.recognizers.chain import RecognizerChain, build_chain

__all__ = ["RecognitionError", "Recognizer", "RecognizerChain", "VoiceClip", "build_chain"]
