"""Synthesizers turn answer text into speech: ``openai`` (any OpenAI-compatible ``/v1/audio/speech``), or your
own by module path; the chain transcodes their audio into WeChat voice parts (bot/voice/speech.py)."""
from bot.voice.synthesizers.base import Speech, SynthesisError, Synthesizer
from bot.voice.synthesizers.chain import SynthesizerChain, build_synthesizer, build_synthesizer_chain

__all__ = ["Speech", "SynthesisError", "Synthesizer", "SynthesizerChain", "build_synthesizer",
           "build_synthesizer_chain"]
