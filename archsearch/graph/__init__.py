"""The channel graph: trace a model, derive channel groups and removable blocks."""

from __future__ import annotations

from archsearch.graph._attention import SlicedMultiheadAttention
from archsearch.graph._fx import symbolic_trace
from archsearch.graph._graph import Block, ChannelGraph, ChannelGroup, LayerCall, Segment
from archsearch.graph._window import SlicedWindowAttention

__all__ = ["Block", "ChannelGraph", "ChannelGroup", "LayerCall", "Segment",
           "SlicedMultiheadAttention", "SlicedWindowAttention", "symbolic_trace"]
