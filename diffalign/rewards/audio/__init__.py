"""Audio rewards: CLAP score (transformers ``ClapModel`` or ``laion_clap`` backend)."""
