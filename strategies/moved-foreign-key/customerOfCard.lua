--[[
customerOfCard: a strategy that catches a moved foreign key through the before
image. Bound in mapTable.json as
  pr_cards.changes.sv_customer = "__fromFile__[customerOfCard]"
A card moved from one account to another (ID_ACCOUNT changed): the customer it left
must drop it from their single view and the customer it joined must show it. rtu
calls a strategy with the image of the record BEFORE the change as well as the
image after (when the two differ in what the strategy reads), and records the
identifiers of both: this function only has to answer for the document it is
given, whichever image that is. So it must NOT skip a document because of its own
__STATE__ (a soft-deleted card still tells its customer to drop it), and it must
read the foreign key from `document`, never from a lookup of the card itself
(the collection holds only the after image by then).
]]
return function(document, db, log)
  local account_id = document.ID_ACCOUNT
  if account_id == nil or account_id == null then return {} end
  local account = db:findOne("pr_accounts", { ID_ACCOUNT = account_id, __STATE__ = "PUBLIC" })
  if account == nil or account.ID_CUSTOMER == nil or account.ID_CUSTOMER == null then
    log.debug("card of an unknown account", { ID_CARD = document.ID_CARD, ID_ACCOUNT = account_id })
    return {}
  end
  return { { customerId = account.ID_CUSTOMER } }
end
