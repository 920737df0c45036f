"""Test servers for bearmail: a scripted fake server, an SMTP sink, a PKI.

Everything here is standard library only and runs with /usr/bin/python3.
See fakeserver.py and pki.py for the APIs.
"""
