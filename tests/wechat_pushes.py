"""Every push an Official Account's callback receives, as WeChat's documentation shows it.

Field names and shapes follow developers.weixin.qq.com/doc/offiaccount (接收普通消息, 接收事件推送, 自定义菜单事件推送,
模板消息, 群发, 发布能力, 订阅通知, 客服消息, 微信认证事件推送, 微信卡券, 微信连Wi-Fi, 摇一摇周边, 微信门店, 微信扫一扫,
电子发票), cross-checked with wechatpy's and other SDKs' parser tests; values are made up. Each entry is
a body: the XML after the common header (``{msg_id}`` is filled with a fresh MsgId per push); :func:`push` adds
the header with an openid and a CreateTime of the caller's, so that no two pushes share a dedupe key.
"""
from __future__ import annotations

from itertools import count

_ids = count(7_000_000_000_000_000_001)

MESSAGES: dict[str, str] = {
    "text": "<Content><![CDATA[你好]]></Content><MsgId>{msg_id}</MsgId><MsgDataId>xxxx</MsgDataId><Idx>1</Idx>",
    "image": "<PicUrl><![CDATA[http://mmbiz.qpic.cn/x.jpg]]></PicUrl><MediaId><![CDATA[media_id]]></MediaId>"
             "<MsgId>{msg_id}</MsgId>",
    "voice": "<MediaId><![CDATA[media_id]]></MediaId><Format><![CDATA[amr]]></Format>"
             "<Recognition><![CDATA[你好]]></Recognition><MsgId>{msg_id}</MsgId>",
    "video": "<MediaId><![CDATA[media_id]]></MediaId><ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>"
             "<MsgId>{msg_id}</MsgId>",
    "shortvideo": "<MediaId><![CDATA[media_id]]></MediaId><ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>"
                  "<MsgId>{msg_id}</MsgId>",
    "location": "<Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale>"
                "<Label><![CDATA[位置信息]]></Label><MsgId>{msg_id}</MsgId>",
    "link": "<Title><![CDATA[公众平台官网链接]]></Title><Description><![CDATA[公众平台官网链接]]></Description>"
            "<Url><![CDATA[https://mp.weixin.qq.com]]></Url><MsgId>{msg_id}</MsgId>",
    # a type wechatpy does not know (UnknownMessage): it must keep its name
    "miniprogrampage": "<Title><![CDATA[标题]]></Title><AppId><![CDATA[wxappid]]></AppId>"
                       "<PagePath><![CDATA[pages/index]]></PagePath><ThumbUrl><![CDATA[http://x]]></ThumbUrl>"
                       "<ThumbMediaId><![CDATA[thumb]]></ThumbMediaId><MsgId>{msg_id}</MsgId>",
}

_SCAN_INFO = "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>"
_PICS = ("<SendPicsInfo><Count>1</Count><PicList><item><PicMd5Sum><![CDATA[1b5f7c23b5bf75682a53e7b6d163e185]]>"
         "</PicMd5Sum></item></PicList></SendPicsInfo>")

EVENTS: dict[str, str] = {
    # 关注/取消关注, 扫描带参数二维码, 上报地理位置, 自定义菜单
    "subscribe": "",
    "unsubscribe": "",
    "SCAN": "<EventKey><![CDATA[123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>",
    "LOCATION": "<Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>",
    "CLICK": "<EventKey><![CDATA[EVENTKEY]]></EventKey>",
    "VIEW": "<EventKey><![CDATA[www.qq.com]]></EventKey><MenuId>MENUID</MenuId>",
    "scancode_push": "<EventKey><![CDATA[6]]></EventKey>" + _SCAN_INFO,
    "scancode_waitmsg": "<EventKey><![CDATA[6]]></EventKey>" + _SCAN_INFO,
    "pic_sysphoto": "<EventKey><![CDATA[6]]></EventKey>" + _PICS,
    "pic_photo_or_album": "<EventKey><![CDATA[6]]></EventKey>" + _PICS,
    "pic_weixin": "<EventKey><![CDATA[6]]></EventKey>" + _PICS,
    "location_select": "<EventKey><![CDATA[6]]></EventKey><SendLocationInfo><Location_X><![CDATA[23]]></Location_X>"
                       "<Location_Y><![CDATA[113]]></Location_Y><Scale><![CDATA[15]]></Scale><Label><![CDATA[ 广州市]]>"
                       "</Label><Poiname><![CDATA[]]></Poiname></SendLocationInfo>",
    "view_miniprogram": "<EventKey><![CDATA[pages/index/index]]></EventKey><MenuId>MENUID</MenuId>",
    # 模板消息, 群发, 发布
    "TEMPLATESENDJOBFINISH": "<MsgID>200163836</MsgID><Status><![CDATA[success]]></Status>",
    "MASSSENDJOBFINISH": "<MsgID>1000001625</MsgID><Status><![CDATA[err(30003)]]></Status><TotalCount>0</TotalCount>"
                         "<FilterCount>0</FilterCount><SentCount>0</SentCount><ErrorCount>0</ErrorCount>"
                         "<CopyrightCheckResult><Count>0</Count><ResultList/><CheckState>2</CheckState>"
                         "</CopyrightCheckResult><ArticleUrlResult><Count>1</Count><ResultList><item><ArticleIdx>1"
                         "</ArticleIdx><ArticleUrl><![CDATA[http://mp.weixin.qq.com/s/x]]></ArticleUrl></item>"
                         "</ResultList></ArticleUrlResult>",
    "PUBLISHJOBFINISH": "<PublishEventInfo><publish_id>2247503051</publish_id><publish_status>0</publish_status>"
                        "<article_id><![CDATA[b5O2OUs25HBxRceL7hfReg]]></article_id><article_detail><count>1</count>"
                        "<item><idx>1</idx><article_url><![CDATA[ARTICLE_URL]]></article_url></item>"
                        "</article_detail></PublishEventInfo>",
    # 订阅通知
    "subscribe_msg_popup_event": "<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_"
                                 "3gz3Oc0NIc]]></TemplateId><SubscribeStatusString><![CDATA[accept]]>"
                                 "</SubscribeStatusString><PopupScene>2</PopupScene></List><List><TemplateId><![CDATA["
                                 "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId><SubscribeStatusString>"
                                 "<![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List>"
                                 "</SubscribeMsgPopupEvent>",
    "subscribe_msg_change_event": "<SubscribeMsgChangeEvent><List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDw"
                                  "H3_3gz3Oc0NIc]]></TemplateId><SubscribeStatusString><![CDATA[reject]]>"
                                  "</SubscribeStatusString></List></SubscribeMsgChangeEvent>",
    "subscribe_msg_sent_event": "<SubscribeMsgSentEvent><List><TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_"
                                "3gz3Oc0NIc]]></TemplateId><MsgID>1700827132819554304</MsgID><ErrorCode>0</ErrorCode>"
                                "<ErrorStatus><![CDATA[success]]></ErrorStatus></List></SubscribeMsgSentEvent>",
    # 客服会话
    "kf_create_session": "<KfAccount><![CDATA[test1@test]]></KfAccount>",
    "kf_close_session": "<KfAccount><![CDATA[test1@test]]></KfAccount>",
    "kf_switch_session": "<FromKfAccount><![CDATA[test1@test]]></FromKfAccount>"
                         "<ToKfAccount><![CDATA[test2@test]]></ToKfAccount>",
    # 微信认证
    "qualification_verify_success": "<ExpiredTime>1442401156</ExpiredTime>",
    "qualification_verify_fail": "<FailTime>1442401122</FailTime><FailReason><![CDATA[by time]]></FailReason>",
    "naming_verify_success": "<ExpiredTime>1442401093</ExpiredTime>",
    "naming_verify_fail": "<FailTime>1442401061</FailTime><FailReason><![CDATA[by time]]></FailReason>",
    "annual_renew": "<ExpiredTime>1442401004</ExpiredTime>",
    "verify_expired": "<ExpiredTime>1442400900</ExpiredTime>",
    # 卡券
    "card_pass_check": "<CardId><![CDATA[phqDtjm3ri0Y32cBVOTSkbBGGBp8]]></CardId><RefuseReason><![CDATA[]]></RefuseReason>",
    "card_not_pass_check": "<CardId><![CDATA[phqDtjm3ri0Y32cBVOTSkbBGGBp8]]></CardId><RefuseReason><![CDATA[非法代制]]>"
                           "</RefuseReason>",
    "user_get_card": "<CardId><![CDATA[pFS7Fjg8kV1IdDz01r4SQwMkuCKc]]></CardId><IsGiveByFriend>0</IsGiveByFriend>"
                     "<UserCardCode><![CDATA[12312312]]></UserCardCode><FriendUserName><![CDATA[]]></FriendUserName>"
                     "<OuterId>0</OuterId><OldUserCardCode><![CDATA[]]></OldUserCardCode><OuterStr><![CDATA[12b]]>"
                     "</OuterStr><IsRestoreMemberCard>0</IsRestoreMemberCard><IsRecommendByFriend>0"
                     "</IsRecommendByFriend><UnionId>o6_bmasdasdsad6_2sgVt7hMZOPfL</UnionId>",
    "user_gifting_card": "<CardId><![CDATA[pFS7Fjg9kV1IdDz01r4SQwMkuCKc]]></CardId><UserCardCode><![CDATA[936986896665]]>"
                         "</UserCardCode><IsReturnBack>0</IsReturnBack><FriendUserName><![CDATA[oFS7Fjl0WsZ9AMZqrI80n"
                         "bIq8xrA]]></FriendUserName><IsChatRoom>0</IsChatRoom>",
    "user_del_card": "<CardId><![CDATA[pMBqbtxunT5XHAxW6nmYUsk9eUhI]]></CardId><UserCardCode><![CDATA[12312312]]>"
                     "</UserCardCode>",
    "user_consume_card": "<CardId><![CDATA[pMBqbtxunT5XHAxW6nmYUsk9eUhI]]></CardId><UserCardCode><![CDATA[12312312]]>"
                         "</UserCardCode><ConsumeSource><![CDATA[FROM_API]]></ConsumeSource><LocationName><![CDATA[]]>"
                         "</LocationName><StaffOpenId><![CDATA[oFS7Fjl0WsZ9AMZqrI80nbIq8xrA]]></StaffOpenId>"
                         "<VerifyCode><![CDATA[]]></VerifyCode><RemarkAmount><![CDATA[]]></RemarkAmount>"
                         "<OuterStr><![CDATA[xxxxx]]></OuterStr>",
    "user_pay_from_pay_cell": "<CardId><![CDATA[po2VNuCuRo-8sxxxxxxxxxxx]]></CardId><UserCardCode><![CDATA[3863689952]]>"
                              "</UserCardCode><TransId><![CDATA[10022403432015929599]]></TransId><LocationId>291710847"
                              "</LocationId><Fee><![CDATA[10000]]></Fee><OriginalFee><![CDATA[10000]]></OriginalFee>",
    "user_view_card": "<CardId><![CDATA[pMBqbtxunT5XHAxW6nmYUsk9eUhI]]></CardId><UserCardCode><![CDATA[12312312]]>"
                      "</UserCardCode><OuterStr><![CDATA[12b]]></OuterStr>",
    "user_enter_session_from_card": "<CardId><![CDATA[pMBqbtxunT5XHAxW6nmYUsk9eUhI]]></CardId><UserCardCode><![CDATA["
                                    "12312312]]></UserCardCode>",
    "update_member_card": "<CardId><![CDATA[pbLatjtZ7v1BG_ZnTjbW85GYc_E8]]></CardId><UserCardCode><![CDATA[18040700"
                          "1073]]></UserCardCode><ModifyBonus>3</ModifyBonus><ModifyBalance>0</ModifyBalance>",
    "card_sku_remind": "<CardId><![CDATA[pMBqbtxunT5XHAxW6nmYUsk9eUhI]]></CardId><Detail><![CDATA[the card's quantity "
                       "is equal to 0]]></Detail>",
    "card_pay_order": "<OrderId><![CDATA[404091456]]></OrderId><Status><![CDATA[ORDER_STATUS_FINANCE_SUCC]]></Status>"
                      "<CreateOrderTime>1472549160</CreateOrderTime><PayFinishTime>0</PayFinishTime><Desc><![CDATA["
                      "]]></Desc><FreeCoinCount><![CDATA[200]]></FreeCoinCount><PayCoinCount><![CDATA[0]]>"
                      "</PayCoinCount><RefundFreeCoinCount><![CDATA[0]]></RefundFreeCoinCount><RefundPayCoinCount>"
                      "<![CDATA[0]]></RefundPayCoinCount><OrderType><![CDATA[ORDER_TYPE_SYS_ADD]]></OrderType>"
                      "<Memo><![CDATA[开通账户奖励]]></Memo><ReceiptInfo><![CDATA[]]></ReceiptInfo>",
    "submit_membercard_user_info": "<CardId><![CDATA[pbLatjtZ7v1BG_ZnTjbW85GYc_E8]]></CardId><UserCardCode><![CDATA["
                                   "018255396048]]></UserCardCode>",
    # 微信连Wi-Fi, 摇一摇周边, 门店, 扫一扫, 电子发票
    "WifiConnected": "<ConnectTime>0</ConnectTime><ExpireTime>0</ExpireTime><VendorId><![CDATA[3001224419]]>"
                     "</VendorId><ShopId><![CDATA[PlaceId]]></ShopId><DeviceNo><![CDATA[DeviceNo]]></DeviceNo>",
    "ShakearoundUserShake": "<ChosenBeacon><Uuid><![CDATA[uuid]]></Uuid><Major>major</Major><Minor>minor</Minor>"
                            "<Distance>0.057</Distance></ChosenBeacon><AroundBeacons><AroundBeacon><Uuid><![CDATA["
                            "uuid]]></Uuid><Major>major</Major><Minor>minor</Minor><Distance>166.816</Distance>"
                            "</AroundBeacon></AroundBeacons>",
    "poi_check_notify": "<UniqId><![CDATA[123adb]]></UniqId><PoiId><![CDATA[123123]]></PoiId><Result><![CDATA[fail]]>"
                        "</Result><Msg><![CDATA[xxxxxx]]></Msg>",
    "user_scan_product": "<KeyStandard><![CDATA[ean13]]></KeyStandard><KeyStr><![CDATA[6901481811083]]></KeyStr>"
                         "<Country><![CDATA[中国]]></Country><Province><![CDATA[广东]]></Province><City><![CDATA[广州]]>"
                         "</City><Sex>1</Sex><Scene>2</Scene><ExtInfo><![CDATA[123]]></ExtInfo>",
    "user_scan_product_enter_session": "<KeyStandard><![CDATA[ean13]]></KeyStandard><KeyStr><![CDATA[6901481811083]]>"
                                       "</KeyStr><ExtInfo><![CDATA[123]]></ExtInfo>",
    "user_scan_product_async": "<KeyStandard><![CDATA[ean13]]></KeyStandard><KeyStr><![CDATA[6901481811083]]></KeyStr>"
                               "<ExtInfo><![CDATA[123]]></ExtInfo><RegionCode><![CDATA[440105]]></RegionCode>",
    "user_scan_product_verify_action": "<KeyStandard><![CDATA[ean13]]></KeyStandard><KeyStr><![CDATA[6901481811083]]>"
                                       "</KeyStr><Result><![CDATA[verify_ok]]></Result><ReasonMsg><![CDATA[]]>"
                                       "</ReasonMsg>",
    "user_authorize_invoice": "<SuccOrderId><![CDATA[1202933957956]]></SuccOrderId><FailOrderId><![CDATA[]]>"
                              "</FailOrderId><AuthorizeAppId><![CDATA[wx1234]]></AuthorizeAppId><Source><![CDATA[web]]>"
                              "</Source>",
}

#: A subscription through a QR code: on the wire ``subscribe`` with a ``qrscene_`` EventKey (wechatpy calls it
#: ``subscribe_scan``).
QR_SUBSCRIBE = "<EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>"


def push(msg_type: str, event: str | None, body: str, *, openid: str, time: int,
         account: str = "gh_test_account") -> str:
    """The whole push XML."""
    head = (f"<ToUserName><![CDATA[{account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{time}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>")
    if event is not None:
        head += f"<Event><![CDATA[{event}]]></Event>"
    return "<xml>" + head + body.replace("{msg_id}", str(next(_ids))) + "</xml>"
