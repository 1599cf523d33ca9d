"""OLR (Karatsiolis & Kamilaris): occlusion-based label embeddings, analyses and editing."""
