"""The lease API: the aiohttp endpoint workers call, inside the operator process."""
