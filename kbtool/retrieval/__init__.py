"""Finding things: BM25 (lexical), MiniLM embeddings (semantic) and taxonomy placement."""
