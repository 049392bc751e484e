"""One module per screen. The app's screen list (``tui.app.SCREENS``) names them."""
