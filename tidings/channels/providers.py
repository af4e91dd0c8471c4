"""Builds the provider-backed senders (push, SMS, Slack) that the settings configure.

A sender is built only when its credentials are set, so a deployment without Twilio simply has
no SMS channel (the activity then reports "no sms provider is configured"). Slack is always
built: incoming-webhook URLs are per-user credentials, and the bot token is optional.
Bad credentials (an unreadable key file, a key of the wrong type) fail here, at start-up.
"""

from __future__ import annotations

import logging

import httpx

from tidings.channels.base import ChannelSender
from tidings.channels.failover import FailoverSender
from tidings.channels.push import PushSender
from tidings.channels.push_apns import ApnsClient
from tidings.channels.push_fcm import FcmClient
from tidings.channels.slack import SlackSender
from tidings.channels.sms_twilio import TwilioSmsSender
from tidings.models import Channel
from tidings.settings import Settings
from tidings.store import Store

logger = logging.getLogger(__name__)


def fcm_configured(settings: Settings) -> bool:
    return bool(settings.fcm_service_account_file or settings.fcm_service_account_json)


def apns_configured(settings: Settings) -> bool:
    return settings.apns_key_file is not None


def twilio_configured(settings: Settings) -> bool:
    return bool(settings.twilio_account_sid)


def build_sms_sender(settings: Settings, http: httpx.AsyncClient) -> ChannelSender:
    primary = TwilioSmsSender(settings, http)
    if not settings.twilio_fallback_accounts:
        return primary
    accounts: list[tuple[str, ChannelSender]] = [(str(settings.twilio_account_sid), primary)]
    for account in settings.twilio_fallback_accounts:
        account_settings = settings.model_copy(
            update={
                "twilio_account_sid": account.account_sid,
                "twilio_auth_token": account.auth_token,
                "twilio_from_number": account.from_number,
                "twilio_messaging_service_sid": account.messaging_service_sid,
                "twilio_base_url": account.base_url or settings.twilio_base_url,
            }
        )
        accounts.append((account.account_sid, TwilioSmsSender(account_settings, http)))
    return FailoverSender(Channel.SMS, accounts)


def build_provider_senders(
    settings: Settings, store: Store, http: httpx.AsyncClient
) -> dict[Channel, ChannelSender]:
    senders: dict[Channel, ChannelSender] = {}
    fcm = FcmClient(settings, http) if fcm_configured(settings) else None
    apns = ApnsClient(settings) if apns_configured(settings) else None
    if fcm is not None or apns is not None:
        senders[Channel.PUSH] = PushSender(store, fcm=fcm, apns=apns)
    if twilio_configured(settings):
        senders[Channel.SMS] = build_sms_sender(settings, http)
    senders[Channel.SLACK] = SlackSender(settings, http)
    logger.info(
        "provider channels: push (fcm=%s, apns=%s), sms=%s, slack=yes (bot token: %s)",
        fcm is not None,
        apns is not None,
        Channel.SMS in senders,
        settings.slack_bot_token is not None,
    )
    return senders
