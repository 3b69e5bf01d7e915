"""Links: payment links and in-office QR links, patient sessions, one-time sign-in codes."""
