"""The channel graph: trace a model, derive channel groups and removable blocks."""

from __future__ import annotations

from archsearch.graph._attention import ATTENTION_TYPES as ATTENTION_TYPES
from archsearch.graph._attention import SlicedMultiheadAttention
from archsearch.graph._attention import count_attention as count_attention
from archsearch.graph._attention import slice_attention as slice_attention
from archsearch.graph._fx import symbolic_trace
from archsearch.graph._graph import Block, ChannelGraph, ChannelGroup, LayerCall, Segment
from archsearch.graph._window import SlicedWindowAttention
from archsearch.graph._window import is_window_attention as is_window_attention
from archsearch.graph._window import projections as projections
from archsearch.graph._window import window_rules as window_rules

__all__ = ["Block", "ChannelGraph", "ChannelGroup", "LayerCall", "Segment",
           "SlicedMultiheadAttention", "SlicedWindowAttention", "symbolic_trace"]
