"""The core of KD Atlas: the typed model, loading and validation, the ``KnowledgeBase`` façade,
the graph, problems, JSON Schemas, safe YAML and the atomic writer. Imports no CLI or site code."""
