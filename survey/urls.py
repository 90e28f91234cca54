from django.urls import path

from survey import views

app_name = "survey"

urlpatterns = [
    path("s/<slug:slug>/", views.entry, name="entry"),
    path("s/<slug:slug>/refused/", views.refused, name="refused"),
    path("s/<slug:slug>/consent/", views.consent, name="consent"),
    path("s/<slug:slug>/about-you/", views.demographics, name="demographics"),
    path("s/<slug:slug>/instructions/", views.instructions, name="instructions"),
    path("s/<slug:slug>/question/<int:position>/", views.question, name="question"),
    path("s/<slug:slug>/debrief/", views.debrief, name="debrief"),
    path("s/<slug:slug>/done/", views.done, name="done"),
]
