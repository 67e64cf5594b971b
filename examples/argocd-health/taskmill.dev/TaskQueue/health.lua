-- Argo CD health of a Taskmill TaskQueue: Suspended while paused, else Healthy.
local hs = {}
if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "paused: its Tasks are held"
else
  hs.status = "Healthy"
  hs.message = "serving"
end
return hs
