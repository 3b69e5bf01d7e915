"""PRESENTATION: the patient portal (QuickPay, sign-in, full portal pages) rendered with Jinja2.

Routes parse the request, call one service or selector, and render. No client framework, no
third-party scripts; every page carries a strict Content-Security-Policy with a nonce.
"""
