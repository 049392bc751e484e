"""One module per screen. The app's screen list (``mnemos_tui.app.SCREENS``) names them."""
