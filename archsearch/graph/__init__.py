"""The channel graph: trace a model, derive channel groups and removable blocks."""

from __future__ import annotations

from archsearch.graph._attention import (
    ATTENTION_TYPES,
    SlicedMultiheadAttention,
    count_attention,
    slice_attention,
)
from archsearch.graph._fx import symbolic_trace
from archsearch.graph._graph import Block, ChannelGraph, ChannelGroup, LayerCall, Segment
from archsearch.graph._window import (
    SlicedWindowAttention,
    is_window_attention,
    projections,
    window_rules,
)

__all__ = ["ATTENTION_TYPES", "Block", "ChannelGraph", "ChannelGroup", "LayerCall", "Segment",
           "SlicedMultiheadAttention", "SlicedWindowAttention", "count_attention",
           "is_window_attention", "projections", "slice_attention", "symbolic_trace",
           "window_rules"]
