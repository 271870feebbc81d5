"""Server-rendered web pages for the parties of the sharing process (exchange.web.pages)."""
