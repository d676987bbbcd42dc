from django.urls import path

from toggles.ofrep import views

urlpatterns = [
    path("evaluate/flags", views.evaluate_flags, name="ofrep-evaluate-flags"),
    path("evaluate/flags/<str:key>", views.evaluate_flag, name="ofrep-evaluate-flag"),
]
