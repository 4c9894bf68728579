"""E-boards: what the board shows (state, board) and its local page (server, aiohttp)."""

from edge_agent.eboard.board import Board
from edge_agent.eboard.state import Banner, BoardState, Entry, board_state

__all__ = ["Banner", "Board", "BoardState", "Entry", "board_state"]
