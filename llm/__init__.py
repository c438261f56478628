"""Chat models: the factory for any OpenAI-compatible endpoint, the embedded llama.cpp model and
the scripted test double."""
