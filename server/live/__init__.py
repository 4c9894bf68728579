"""Live broadcasts: microphone, relayed stream or clip, in sync to every loudspeaker now."""
