--[[
restaurantsOfReview: low-code identifier function of the food-delivery example,
bound in projectionChangesSchema.json as
  sv_restaurants: {"path": ["pr_registry", "pr_reviews"], "identifier": "__fromFile__[restaurantsOfReview]"}
so it runs for every review reached from a changed customer, and (implicit sub-path)
for every changed review.

A review belongs to a restaurant in one of two ways: reviews written since the app
ties them to orders carry ID_ORDER_REVIEW (the restaurant is the order's), legacy
reviews imported from the old website carry ID_RESTAURANT_REVIEW and no order. A
plain {"ID_RESTAURANT": "<field>"} identifier cannot express "this field, else look
the order up", hence this function.

Contract: function(document, db, log) -> {identifier, ...}, with read-only
db:find(collection, filter, options) / db:findOne(collection, filter, options).
Soft-deleted records stay in the collections: look up PUBLIC ones only.
]]
local function present(v)
  return v ~= nil and v ~= null
end

return function(document, db, log)
  if present(document.ID_RESTAURANT_REVIEW) then
    return { { ID_RESTAURANT = document.ID_RESTAURANT_REVIEW } }
  end
  if not present(document.ID_ORDER_REVIEW) then
    log.warn("review with neither a restaurant nor an order", { ID_REVIEW = document.ID_REVIEW })
    return {}
  end
  local order = db:findOne("pr_orders", { ID_ORDER = document.ID_ORDER_REVIEW, __STATE__ = "PUBLIC" })
  if order == nil or not present(order.ID_RESTAURANT_ORDER) then
    log.debug("review of an unknown order", { ID_REVIEW = document.ID_REVIEW })
    return {}
  end
  return { { ID_RESTAURANT = order.ID_RESTAURANT_ORDER } }
end
