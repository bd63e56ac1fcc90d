-- updated_at in the same microsecond RFC 3339 form the store writes (SQLite's clock has milliseconds, padded
-- to six digits), and never earlier than the previous value, so text order stays time order.

DROP TRIGGER organizations_touch_updated_at;
DROP TRIGGER organization_members_touch_updated_at;
DROP TRIGGER organization_api_credentials_touch_updated_at;
DROP TRIGGER sms_messages_touch_updated_at;
DROP TRIGGER provider_usage_daily_touch_updated_at;

CREATE TRIGGER organizations_touch_updated_at AFTER UPDATE ON organizations FOR EACH ROW
BEGIN
    UPDATE organizations
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE id = NEW.id;
END;
CREATE TRIGGER organization_members_touch_updated_at AFTER UPDATE ON organization_members FOR EACH ROW
BEGIN
    UPDATE organization_members
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE org_id = NEW.org_id AND user_id = NEW.user_id;
END;
CREATE TRIGGER organization_api_credentials_touch_updated_at AFTER UPDATE ON organization_api_credentials
FOR EACH ROW
BEGIN
    UPDATE organization_api_credentials
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE id = NEW.id;
END;
CREATE TRIGGER sms_messages_touch_updated_at AFTER UPDATE ON sms_messages FOR EACH ROW
BEGIN
    UPDATE sms_messages
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE id = NEW.id;
END;
CREATE TRIGGER provider_usage_daily_touch_updated_at AFTER UPDATE ON provider_usage_daily FOR EACH ROW
BEGIN
    UPDATE provider_usage_daily
    SET updated_at = max(strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), OLD.updated_at)
    WHERE org_id = NEW.org_id AND provider = NEW.provider AND day = NEW.day;
END;
