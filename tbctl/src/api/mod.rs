//! OpenAI and Ollama API flavours: request bodies, streaming parsers, discovery.
