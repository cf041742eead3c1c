"""Notifications where the team (or the customer) reads them: e-mail, DingTalk, WeCom, Feishu and
generic webhooks, as an outbox connector (``[[helpdesk]]`` with ``type = "notify"``).

``config`` is the model (pydantic + stdlib); ``templates`` renders messages and digests in zh-CN
and English (pure); ``connector`` sends them (apprise, plus a signed Feishu sender) and decides
what is worth a message, holding the rest of a storm for one digest.
"""
