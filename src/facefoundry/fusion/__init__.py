"""Dataset fusion (the Dataset Fusion seed): datasets of different generators combined into one.

``select`` decides which identities of which source enter (counts or shares, a sampling strategy, the
cross-source identity-overlap check); ``fuse`` embeds, selects and writes the fused dataset.
"""
