//! Provider clients for byoc: verifiers and senders for Twilio, Google Calendar, Stripe and HubSpot.
